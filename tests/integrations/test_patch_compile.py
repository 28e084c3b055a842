"""torch.compile of a whole patched model + loss + backward: equal to eager."""
import pytest
import torch

from hf_tiny import batch, grads, tiny

import mindcore.integrations as mi


# aot_eager traces the whole graph (fullgraph: no breaks) in seconds; inductor also generates code (minutes here)
@pytest.mark.parametrize("backend", ["aot_eager", pytest.param("inductor", marks=pytest.mark.slow)])
def test_compiled_patched_model_equals_eager(backend):
    ids, labels, attn = batch()
    model = mi.patch(tiny("llama", num_hidden_layers=1))
    out = model(input_ids=ids, labels=labels, attention_mask=attn)
    out.loss.backward()
    g_eager = grads(model)
    model.zero_grad()
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True, backend=backend)
    for _ in range(2):                      # second call: the cached graph
        model.zero_grad()
        c = compiled(input_ids=ids, labels=labels, attention_mask=attn)
        c.loss.backward()
    torch.testing.assert_close(c.loss, out.loss, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(c.sample_losses, out.sample_losses, rtol=1e-5, atol=1e-6)
    g = grads(model)
    for n in g_eager:
        torch.testing.assert_close(g[n], g_eager[n], rtol=1e-4, atol=1e-6, msg=n)
