"""The public op survives torch.compile (no graph breaks) for every provider that runs here."""
import pytest
import torch

import mindcore
from helpers import DEVICES, PROVIDERS, make_inputs, skip_unless


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("provider", PROVIDERS)
def test_fullgraph_compile_matches_eager(provider, device):
    skip_unless(provider, device, torch.float32)
    torch._dynamo.reset()
    inputs = make_inputs(16, 8, 29, 3, device=device, bias=True, seed=21)
    state_e = mindcore.InertiaState(3, device=device)
    state_c = mindcore.InertiaState(3, device=device)
    slots = torch.tensor([0, 1, 2], device=device)

    def step(h, w, b, state):
        out = mindcore.perspective_cross_entropy(h, w, inputs["targets"], inputs["path_ids"],
                                                 inputs["path_weights"], bias=b, inertia=state,
                                                 path_slots=slots, provider=provider)
        return out.loss * 1.5, out.path_loss

    def grads(fn, state):
        leaves = [inputs[k].detach().clone().requires_grad_() for k in ("hidden", "weight", "bias")]
        loss, path_loss = fn(*leaves, state)
        loss.backward()
        return [loss.detach(), path_loss] + [t.grad for t in leaves]

    eager = grads(step, state_e)
    compiled = grads(torch.compile(step, backend="aot_eager", fullgraph=True), state_c)
    for a, b in zip(eager, compiled):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(state_e.value, state_c.value)
    assert torch.equal(state_e.count, state_c.count)
