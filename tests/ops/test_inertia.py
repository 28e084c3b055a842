"""Inertia state rules, for every provider (the update runs inside each provider's pass)."""
import math

import pytest
import torch

import mindcore
from helpers import DEVICES, PROVIDERS, make_inputs, naive, skip_unless


def _call(inputs, state, slots, provider):
    return mindcore.perspective_cross_entropy(
        inputs["hidden"], inputs["weight"], inputs["targets"], inputs["path_ids"], inputs["path_weights"],
        inertia=state, path_slots=torch.tensor(slots, device=inputs["hidden"].device), provider=provider)


def _slot_loss(inputs, paths):
    """Truth: token-weighted mean CE over the given paths (float64)."""
    _, path_loss, path_tokens, _ = naive(inputs, torch.float64)
    tok = path_tokens[paths].double()
    return float((path_loss[paths] * tok).sum() / tok.sum())


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("provider", PROVIDERS)
def test_first_observation_then_ema_with_shared_and_untracked_slots(provider, device):
    skip_unless(provider, device, torch.float32)
    m = 0.8
    state = mindcore.InertiaState(4, momentum=m, device=device)
    slots = [2, 0, 2, -1]  # paths 0 and 2 share slot 2; path 3 untracked; slots 1, 3 untouched
    first = make_inputs(40, 10, 37, 4, device=device, ignore="some", seed=1)
    _call(first, state, slots, provider)
    v1 = {0: _slot_loss(first, [1]), 2: _slot_loss(first, [0, 2])}
    assert state.count.tolist() == [1, 0, 1, 0]
    assert state.value[0].item() == pytest.approx(v1[0], rel=1e-4)
    assert state.value[2].item() == pytest.approx(v1[2], rel=1e-4)
    assert state.value[1].item() == 0.0 and state.value[3].item() == 0.0

    second = make_inputs(40, 10, 37, 4, device=device, ignore="some", seed=2)
    second["weight"] = first["weight"]
    _call(second, state, slots, provider)
    assert state.count.tolist() == [2, 0, 2, 0]
    for s, paths in ((0, [1]), (2, [0, 2])):
        want = m * v1[s] + (1 - m) * _slot_loss(second, paths)
        assert state.value[s].item() == pytest.approx(want, rel=1e-4)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("provider", PROVIDERS)
def test_path_without_tokens_does_not_touch_its_slot(provider, device):
    skip_unless(provider, device, torch.float32)
    state = mindcore.InertiaState(3, device=device)
    inputs = make_inputs(10, 6, 17, 3, device=device, ignore="none", seed=4)
    inputs["path_ids"] = torch.zeros(10, dtype=torch.int64, device=device)  # paths 1, 2 empty
    _call(inputs, state, [0, 1, 2], provider)
    assert state.count.tolist() == [1, 0, 0]
    assert state.value[1:].abs().sum().item() == 0.0


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("provider", PROVIDERS)
def test_nan_step_never_poisons_the_state(provider, device):
    skip_unless(provider, device, torch.float32)
    state = mindcore.InertiaState(2, device=device)
    good = make_inputs(12, 6, 19, 2, device=device, ignore="none", seed=6)
    _call(good, state, [0, 1], provider)
    before_v, before_c = state.value.clone(), state.count.clone()
    bad = make_inputs(12, 6, 19, 2, device=device, ignore="none", seed=7)
    bad["hidden"][bad["path_ids"] == 1] = float("nan")  # path 1 non-finite, path 0 fine
    out = _call(bad, state, [0, 1], provider)
    assert math.isnan(out.path_loss[1].item())
    assert state.count.tolist() == [2, 1]
    assert state.value[1].item() == before_v[1].item()
    assert torch.isfinite(state.value).all()
    assert state.value[0].item() != before_v[0].item() and before_c[0].item() == 1


def test_failed_call_leaves_state_untouched():
    state = mindcore.InertiaState(2)
    inputs = make_inputs(6, 4, 9, 2, seed=8)
    inputs["targets"][0] = 99  # out of range -> error before anything runs
    with pytest.raises(ValueError, match="targets"):
        _call(inputs, state, [0, 1], "reference")
    assert state.count.tolist() == [0, 0] and state.value.tolist() == [0.0, 0.0]


def test_state_dict_round_trip_and_errors():
    state = mindcore.InertiaState(3, momentum=0.7)
    state.update(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([4, 0, 2]), torch.tensor([0, 1, 2]))
    assert state.count.tolist() == [1, 0, 1]
    other = mindcore.InertiaState(3)
    other.load_state_dict(state.state_dict())
    assert torch.equal(other.value, state.value) and torch.equal(other.count, state.count)
    assert other.momentum == 0.7
    with pytest.raises(ValueError, match="num_slots"):
        mindcore.InertiaState(4).load_state_dict(state.state_dict())
    with pytest.raises(KeyError, match="count"):
        other.load_state_dict({"value": state.value, "momentum": 0.9})
    with pytest.raises(ValueError, match="momentum"):
        mindcore.InertiaState(2, momentum=1.0)


def test_module_wrapper_owns_state_and_saves_it():
    loss_fn = mindcore.PerspectiveCrossEntropy(num_slots=3, momentum=0.5)
    inputs = make_inputs(15, 6, 21, 3, seed=10, ignore="none")
    h = inputs["hidden"].requires_grad_()
    out = loss_fn(h, inputs["weight"], inputs["targets"], inputs["path_ids"], inputs["path_weights"],
                  path_slots=torch.tensor([0, 1, 2]))
    out.loss.backward()
    assert h.grad is not None and loss_fn.inertia.count.tolist() == [1, 1, 1]
    sd = loss_fn.state_dict()
    fresh = mindcore.PerspectiveCrossEntropy(num_slots=3, momentum=0.5)
    fresh.load_state_dict(sd)
    assert torch.equal(fresh.inertia.value, loss_fn.inertia.value)
