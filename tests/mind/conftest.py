"""Shared fixtures of the MIND tests: a small built-in dataset and its tokenizer (built once)."""
import pytest


@pytest.fixture(scope="session")
def data():
    pytest.importorskip("reasoning_gym")
    from mindcore.mind.data import builtin_dataset
    return builtin_dataset(seed=0, n_train=64, n_id=8, n_ood=8)


@pytest.fixture(scope="session")
def tok(data):
    pytest.importorskip("transformers")
    from mindcore.mind.tokenizer import build_tokenizer, training_texts
    return build_tokenizer(training_texts(data["train"]), vocab_size=320)
