"""One rank of the FSDP2 / DDP checks (run by torchrun from test_fsdp_ddp.py): each rank takes half
the batch; the loss over the global token count, times the world size (what HF Trainer does with
average_tokens_across_devices), gives gradients equal to one process on the whole batch."""
import json
import sys

import torch
import torch.distributed as dist

from hf_tiny import V, tiny

import mindcore.integrations as mi


def vocab_parallel_refused(family):
    """A head sharded over the vocabulary (tensor parallel), not gathered by FSDP: refused, not wrong."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor
    model = mi.patch(tiny(family))
    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    model.lm_head.weight = torch.nn.Parameter(distribute_tensor(model.lm_head.weight.detach(), mesh, [Shard(0)]))
    ids = torch.randint(0, V, (2, 6))
    try:
        model(input_ids=ids, labels=ids)
    except mi.UnsupportedModelError as e:
        return {"refused": str(e)}
    return {"refused": None}


def check(mode, family):
    if mode == "tp":
        return vocab_parallel_refused(family)
    rank, world = dist.get_rank(), dist.get_world_size()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, V, (4, 10), generator=g)
    labels = ids.clone()
    labels[:, :2] = -100
    labels[3, 6:] = -100
    num_items = (labels[:, 1:] != -100).sum()
    ref = tiny(family)                                   # one process, whole batch, stock transformers
    ref(input_ids=ids, labels=labels).loss.backward()
    model = mi.patch(tiny(family))
    if mode == "ddp":
        wrapped = torch.nn.parallel.DistributedDataParallel(model)
    else:
        wrapped = mi.fsdp.shard(model, head_unit=(mode == "fsdp-head"))
    rows = slice(rank * 4 // world, (rank + 1) * 4 // world)
    for step in range(2):                                # the second step: after reshard / regather
        wrapped.zero_grad()
        out = wrapped(input_ids=ids[rows], labels=labels[rows], num_items_in_batch=num_items)
        (out.loss * world).backward()
    loss = out.loss.detach().clone()
    dist.all_reduce(loss)
    diffs = {}
    for (n, p), (n_ref, p_ref) in zip(model.named_parameters(), ref.named_parameters()):
        grad = p.grad.full_tensor() if hasattr(p.grad, "full_tensor") else p.grad
        diffs[n] = (grad - p_ref.grad).abs().max().item() / max(p_ref.grad.abs().max().item(), 1e-12)
    ref_loss = ref(input_ids=ids, labels=labels).loss.item()
    return {"loss": loss.item(), "ref_loss": ref_loss, "grad_rel_diff": diffs,
            "head_type": type(model.get_output_embeddings().weight).__name__}


def main(cases, out_path):
    """cases: comma-separated mode:family (mode = ddp | fsdp-root | fsdp-head | tp)."""
    dist.init_process_group("gloo")
    results = {case: check(*case.split(":")) for case in cases.split(",")}
    if dist.get_rank() == 0:
        with open(out_path, "w") as f:
            json.dump(results, f)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:3])
