"""Every bad input gets a clear error naming the argument."""
import pytest
import torch

import mindcore
from helpers import make_inputs


def _call(**over):
    kw = make_inputs(8, 5, 13, 3, seed=12)
    kw.update(over)
    return mindcore.perspective_cross_entropy(kw["hidden"], kw["weight"], kw["targets"], kw["path_ids"],
                                              kw["path_weights"], bias=kw["bias"],
                                              inertia=kw.get("inertia"), path_slots=kw.get("path_slots"),
                                              provider=kw.get("provider"))


@pytest.mark.parametrize("over, arg", [
    (dict(hidden=torch.randn(2, 4, 5)), "hidden"),
    (dict(hidden=torch.randint(0, 3, (8, 5))), "hidden"),
    (dict(weight=torch.randn(13, 6)), "weight"),
    (dict(weight=torch.randn(13, 5, dtype=torch.float64)), "weight"),
    (dict(bias=torch.randn(12)), "bias"),
    (dict(bias=torch.randn(13, dtype=torch.bfloat16)), "bias"),
    (dict(targets=torch.randn(8)), "targets"),
    (dict(targets=torch.zeros(7, dtype=torch.int64)), "targets"),
    (dict(targets=torch.full((8,), 13)), "targets"),
    (dict(targets=torch.full((8,), -5)), "targets"),
    (dict(path_ids=torch.zeros(8)), "path_ids"),
    (dict(path_ids=torch.zeros(9, dtype=torch.int64)), "path_ids"),
    (dict(path_ids=torch.full((8,), 3)), "path_ids"),
    (dict(path_ids=torch.full((8,), -1)), "path_ids"),
    (dict(path_weights=torch.ones(3, 1)), "path_weights"),
    (dict(path_weights=torch.ones(3, dtype=torch.int64)), "path_weights"),
    (dict(path_weights=torch.ones(0)), "path_weights"),
    (dict(inertia=mindcore.InertiaState(2)), "path_slots"),
    (dict(path_slots=torch.zeros(3, dtype=torch.int64)), "path_slots"),
    (dict(inertia=mindcore.InertiaState(2), path_slots=torch.tensor([0, 2, -1])), "path_slots"),
    (dict(inertia=mindcore.InertiaState(2), path_slots=torch.tensor([0, -2, 1])), "path_slots"),
    (dict(inertia=mindcore.InertiaState(2), path_slots=torch.tensor([0, 1])), "path_slots"),
    (dict(inertia="state", path_slots=torch.tensor([0, 1, 1])), "inertia"),
    (dict(hidden=[[1.0]]), "hidden"),
])
def test_bad_input_names_the_argument(over, arg):
    with pytest.raises(ValueError, match=rf"perspective_cross_entropy: {arg}\b"):
        _call(**over)


def test_mixed_devices_named():
    meta = torch.empty(3, device="meta")
    with pytest.raises(ValueError, match="several devices"):
        _call(path_weights=meta)


def test_int32_indices_are_accepted():
    kw = make_inputs(8, 5, 13, 3, seed=13)
    a = mindcore.perspective_cross_entropy(kw["hidden"], kw["weight"], kw["targets"], kw["path_ids"],
                                           kw["path_weights"])
    b = mindcore.perspective_cross_entropy(kw["hidden"], kw["weight"], kw["targets"].int(),
                                           kw["path_ids"].int(), kw["path_weights"])
    assert torch.equal(a.path_loss, b.path_loss)
