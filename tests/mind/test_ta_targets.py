"""The TA-target ablations (config ta_target) beside the paper's smoothed path CE."""
import pytest
import torch
import torch.nn.functional as F

from mindcore import InertiaState
from mindcore.mind.config import ConfigError, TrainConfig
from mindcore.mind.ta import TATarget, answer_span_ce

from tiny_setup import make_trainer


def test_answer_span_ce_is_the_masked_mean_token_ce():
    torch.manual_seed(0)
    logits, labels = torch.randn(3, 2, 7), torch.randint(0, 7, (3, 2))
    mask = torch.tensor([[True, True], [True, False], [False, False]])
    ce, tok = answer_span_ce(logits, labels, mask)
    full = F.cross_entropy(logits.reshape(-1, 7), labels.reshape(-1), reduction="none").view(3, 2)
    torch.testing.assert_close(ce[:2], torch.stack([full[0].mean(), full[1, 0]]))
    assert ce[2] == 0 and tok.tolist() == [2, 1, 0]


def test_loss_improvement_ranks_the_path_that_improved_first():
    inertia = InertiaState(4, momentum=0.9)
    tgt = TATarget("loss_improvement", inertia, K=2)
    slots = torch.tensor([0, 1])
    pre = tgt.before(slots)
    inertia.update(torch.tensor([2.0, 2.0]), torch.tensor([5, 5]), slots)   # first visit: no history
    assert tgt(torch.zeros(1, 2), slots, pre).tolist() == [[0.0, 0.0]]
    pre = tgt.before(slots)
    inertia.update(torch.tensor([1.0, 2.5]), torch.tensor([5, 5]), slots)   # path 0 improved, path 1 got worse
    got = tgt(torch.zeros(1, 2), slots, pre)
    torch.testing.assert_close(got, torch.tensor([[1.0 - 2.0, 2.5 - 2.0]]))   # = L_real - L_smoothed_before
    assert got[0, 0] < got[0, 1]   # lower = preferred by the TA


def test_ce_target_is_the_smoothed_loss_and_no_inertia_the_instantaneous():
    inertia = InertiaState(2, momentum=0.9)
    inertia.update(torch.tensor([3.0, 1.0]), torch.tensor([1, 1]), torch.tensor([0, 1]))
    tgt, pl = TATarget("ce", inertia, K=2), torch.tensor([[0.5, 0.7]])
    assert tgt(pl, torch.tensor([0, 1])).tolist() == [[3.0, 1.0]]
    assert tgt(pl, torch.tensor([0, 1]), instantaneous=True) is pl


@pytest.mark.parametrize("pack", [False, True])
def test_answer_span_target_tracks_the_answer_tokens_ce_in_training(pack):
    tr = make_trainer(ta_target="answer_span", ta_warmup_steps=0, steps=1, pack=pack)
    idx = tr._draw(tr.sampler)
    batch = tr._batch(idx)
    with torch.no_grad():   # the student's answer-span CE computed directly from the full logits
        logits = tr.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        rows = torch.arange(batch.input_ids.shape[0])[:, None]
        ans_logits, ans_labels = logits[rows, batch.answer_pos], batch.labels[rows, batch.answer_pos]
        want, _ = answer_span_ce(ans_logits, ans_labels, batch.answer_mask)
    tr._micro(batch, idx)
    slots = idx.repeat_interleave(tr.K) * tr.K + torch.arange(tr.K).repeat(len(idx))
    valid = batch.answer_mask.any(1)
    torch.testing.assert_close(tr.ta_target.answer.value[slots][valid], want[valid], rtol=1e-4, atol=1e-4)
    assert (tr.ta_target.answer.count[slots][valid] > 0).all()
    # it differs from the whole-path CE the paper's target uses
    assert not torch.allclose(tr.ta_target.answer.value[slots][valid], tr.inertia.value[slots][valid])


@pytest.mark.parametrize("target", ["answer_span", "loss_improvement", "perspective_normalised"])
def test_every_ta_target_trains_and_resumes(target, tmp_path):
    tr = make_trainer(ta_target=target, steps=3)
    tr.train(out_dir=str(tmp_path))
    rows = [r for r in tr.history if r.get("phase") == "train"]
    assert len(rows) == 3 and all(torch.isfinite(torch.tensor(r["meta"])) for r in rows)
    assert abs(sum(rows[-1]["alpha"].values()) - 1.0) < 1e-4
    tr2 = make_trainer(ta_target=target, steps=3)
    tr2.load_checkpoint(str(tmp_path / "checkpoint.pt"))
    if target == "answer_span":
        torch.testing.assert_close(tr2.ta_target.answer.value, tr.ta_target.answer.value)


def test_unknown_ta_target_and_max_terms_are_refused():
    with pytest.raises(ConfigError, match="ta_target"):
        TrainConfig(ta_target="answer").validate()
    with pytest.raises(ConfigError, match="max_terms"):
        TrainConfig(max_terms=5).validate()
