"""Offline byte-level BPE for the from-scratch student (no hub download).

Digits are split one per token before BPE, so numbers are spelled digit by digit: the tiny student
learns carrying over a 10-symbol alphabet instead of memorising multi-digit tokens.
"""
from __future__ import annotations

from typing import Iterable

BOS, EOS, PAD = "<bos>", "<eos>", "<pad>"


def build_tokenizer(texts: Iterable[str], vocab_size: int = 320, save_dir=None):
    """Train a byte-level BPE (at most ``vocab_size`` symbols) on ``texts`` -> ``PreTrainedTokenizerFast``.

    ``tokenizer(text)`` prepends <bos>; ``add_special_tokens=False`` gives the bare pieces.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    if vocab_size < len(alphabet) + 3:
        raise ValueError(f"vocab_size={vocab_size} is below the 256 byte symbols + 3 special tokens; "
                         f"use at least {len(alphabet) + 3}")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[PAD, BOS, EOS],
                                  initial_alphabet=alphabet, show_progress=False)
    tok.train_from_iterator(list(texts), trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, tok.token_to_id(BOS))])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD)
    if save_dir is not None:
        fast.save_pretrained(str(save_dir))
    return fast


def load_tokenizer(path):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(str(path))


def training_texts(records) -> list[str]:
    """The strings a tokenizer for ``records`` should be trained on: each row's prompt and rationale.

    The question is repeated once per path, as the student sees it, so BPE spends merges on the
    fixed question wording too (320 symbols: ~21 prompt + ~43 rationale tokens a chain_sum row).
    """
    out = []
    for r in records:
        for p in r.perspectives:
            out += [r.question, p.rationale]
    return out
