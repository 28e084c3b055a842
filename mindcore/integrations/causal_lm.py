"""`patch(model)`: a transformers causal LM computes its training loss with the fused op, never the logits.

The patched forward runs the model's own backbone (``model.base_model``), then calls the LM head module
with the loss arguments; the head's patched forward calls ``mindcore.perspective_cross_entropy``. Going
through the head module (not just its weight) keeps FSDP2's hooks working when the head is its own
``fully_shard`` unit: they gather the weight before the call and reduce-scatter its gradient after.

Loss semantics (stock transformers' ``ForCausalLMLoss``): next-token CE summed over non-ignored targets,
divided by ``num_items_in_batch`` when given (HF Trainer's gradient accumulation), else by their count.
Each sample (batch row, or packed sequence) is one path with weight ``tokens_p / denominator``, so
``sum_p w_p * mean_p`` is that same loss and ``path_loss`` is every sample's mean CE for free.
``sample_weights`` (P,) scale each sample's tokens (all ones = stock; 0 drops a sample):
``w_p = sample_weights[p] * tokens_p / denominator``; with ``patch(..., sample_reduction="mean")`` they are
the op's path weights as they are: ``loss = sum_p sample_weights[p] * mean_p`` (MIND's alpha weighting).
"""
from __future__ import annotations

import types
from dataclasses import dataclass

import torch

from .. import perspective_cross_entropy
from .families import UnsupportedModelError, logit_multiplier
from .packing import token_paths

try:
    from torch.distributed.tensor import DTensor
except ImportError:  # torch without distributed
    DTensor = ()

_STATE = "_mindcore_patch"


def _output_class():
    from transformers.modeling_outputs import CausalLMOutputWithPast

    @dataclass
    class MindcoreCausalLMOutput(CausalLMOutputWithPast):
        """CausalLMOutputWithPast plus each sample's (path's) mean CE and target count (detached)."""
        sample_losses: torch.Tensor | None = None
        sample_tokens: torch.Tensor | None = None

    return MindcoreCausalLMOutput


_OUT = None


class _LossArgs:
    """Loss inputs for the head's forward. A plain object, so FSDP's input casting leaves it alone."""
    __slots__ = ("targets", "path_ids", "path_weights", "ignore_index", "scale", "provider")

    def __init__(self, targets, path_ids, path_weights, ignore_index, scale, provider):
        self.targets, self.path_ids, self.path_weights = targets, path_ids, path_weights
        self.ignore_index, self.scale, self.provider = ignore_index, scale, provider


def _head_forward(self, hidden, mindcore_loss: _LossArgs | None = None):
    if mindcore_loss is None:                      # generation, or logits asked for: the stock Linear
        return getattr(self, _STATE).head_forward(hidden)
    weight, bias = self.weight, self.bias
    if isinstance(weight, DTensor):
        raise UnsupportedModelError(
            f"mindcore.integrations: the LM head weight is a DTensor sharded as {weight.placements} outside an "
            "FSDP2 unshard (tensor / vocab parallel head); shard the head with fully_shard only, or leave "
            "lm_head out of the tensor-parallel plan")
    a = mindcore_loss
    if hidden.dtype != weight.dtype:               # autocast or an fp32 head: compute in the head's dtype
        hidden = hidden.to(weight.dtype)
    if a.scale != 1.0:
        hidden = hidden * a.scale
    return perspective_cross_entropy(hidden, weight, a.targets, a.path_ids, a.path_weights, bias=bias,
                                     ignore_index=a.ignore_index, provider=a.provider)


def _fail(arg, problem, fix):
    raise ValueError(f"mindcore patched forward: {arg} {problem}; {fix}")


def _forward(self, input_ids=None, attention_mask=None, position_ids=None, labels=None,
             sample_weights=None, logits_to_keep=0, **kwargs):
    st = getattr(self, _STATE)
    num_items = kwargs.pop("num_items_in_batch", None)
    shift_labels = kwargs.pop("shift_labels", None)
    if labels is None and shift_labels is None:    # no loss asked: the model's own forward (generate)
        if sample_weights is not None:
            _fail("sample_weights", "is given without labels", "pass labels=..., or drop sample_weights")
        return st.forward(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                          logits_to_keep=logits_to_keep, **kwargs)
    ref = input_ids if input_ids is not None else kwargs.get("inputs_embeds")
    shape = tuple(ref.shape[:2]) if ref is not None else None
    lab = labels if shift_labels is None else shift_labels
    name = "labels" if shift_labels is None else "shift_labels"
    if lab.dim() != 2 or (shape is not None and tuple(lab.shape) != shape):
        _fail(name, f"has shape {tuple(lab.shape)} but the input is {shape}", "pass (batch, seq) labels like input_ids")
    if lab.dtype.is_floating_point or lab.dtype == torch.bool:
        _fail(name, f"has dtype {lab.dtype}", "pass integer token ids (int64), -100 where there is no target")
    base = getattr(self, self.base_model_prefix)
    out = base(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, **kwargs)
    hidden = out.last_hidden_state
    B, T, d = hidden.shape
    ignore = st.ignore_index
    lab = lab.to(hidden.device)
    if shift_labels is None:                       # tokens < t predict t; the last position has no target
        targets = torch.cat([lab[:, 1:], lab.new_full((B, 1), ignore)], 1)
    else:
        targets = lab
    targets = targets.reshape(-1).long()
    cu = kwargs.get("cu_seq_lens_q", kwargs.get("cu_seq_lens_k")) if st.packed else None
    path_ids, num_paths = token_paths(B, T, hidden.device, position_ids if st.packed else None, cu)
    valid = targets != ignore
    tokens = torch.zeros(num_paths, dtype=torch.int64, device=hidden.device).index_add_(0, path_ids, valid.long())
    denom = valid.sum() if num_items is None else torch.as_tensor(num_items, device=hidden.device)
    weights = tokens.float() / denom.float().clamp(min=1)
    if sample_weights is not None:
        sw = torch.as_tensor(sample_weights)
        if sw.dim() != 1 or sw.shape[0] != num_paths:
            kind = "packed sequences" if num_paths != B else "batch rows"
            _fail("sample_weights", f"has shape {tuple(sw.shape)} but the batch has {num_paths} {kind}",
                  f"pass one weight per sample: ({num_paths},)")
        if not sw.dtype.is_floating_point:
            _fail("sample_weights", f"has dtype {sw.dtype}", "pass floating-point weights")
        sw = sw.detach().to(device=hidden.device, dtype=torch.float32)
        weights = sw if st.sample_reduction == "mean" else sw * weights
    head = self.get_output_embeddings()
    res = head(hidden.reshape(B * T, d),
               mindcore_loss=_LossArgs(targets, path_ids, weights, ignore, st.scale, st.provider))
    logits = None
    if st.return_logits:
        keep = slice(-logits_to_keep, None) if isinstance(logits_to_keep, int) else logits_to_keep
        logits = head(hidden[:, keep]) * st.scale
    extra = {k: getattr(out, k, None) for k in ("cache", "past_key_values", "hidden_states", "attentions")
             if k in _OUT.__dataclass_fields__}
    return _OUT(loss=res.loss, logits=logits, sample_losses=res.path_loss, sample_tokens=res.path_tokens, **extra)


class _State:
    def __init__(self, model, head, scale, return_logits, packed, ignore_index, provider, sample_reduction):
        self.forward, self.head, self.head_forward, self.scale = model.forward, head, head.forward, scale
        self.sample_reduction = sample_reduction
        # a forward set on the instance before us (another wrapper, e.g. TRL's) is put back by unpatch
        self.saved = {id(obj): obj.__dict__.get("forward") for obj in (model, head)}
        self.return_logits, self.packed, self.ignore_index, self.provider = return_logits, packed, ignore_index, provider


def _target(model):
    """The transformers PreTrainedModel inside a PEFT / DDP / compile wrapper."""
    for _ in range(4):
        if hasattr(model, "get_base_model"):        # peft.PeftModel
            model = model.get_base_model()
        elif hasattr(model, "_orig_mod"):           # torch.compile's OptimizedModule
            model = model._orig_mod
        elif isinstance(getattr(model, "module", None), torch.nn.Module) and not hasattr(model, "base_model_prefix"):
            model = model.module                    # DDP
        else:
            break
    return model


def patch(model, *, return_logits: bool = False, packed: bool = True, sample_reduction: str = "token",
          ignore_index: int = -100, provider: str | None = None):
    """Make ``model``'s loss the fused op's; returns the same object. ``unpatch(model)`` undoes it.

    return_logits: also compute logits when labels are given (they cost the memory the patch saves).
    packed: treat ``cu_seq_lens_q`` / restarting ``position_ids`` in a (1, N) batch as packed sequences,
    one path each. sample_reduction: "token" (sample_weights scale tokens, stock normalisation) or
    "mean" (loss = sum_p sample_weights[p] * mean CE of sample p). provider: the op's (None = best).
    """
    if sample_reduction not in ("token", "mean"):
        raise ValueError(f"mindcore.integrations.patch: sample_reduction={sample_reduction!r}; pass 'token' or 'mean'")
    global _OUT
    m = _target(model)
    name = type(m).__name__
    if getattr(m, _STATE, None) is not None:
        return model                                 # already patched: idempotent
    head = m.get_output_embeddings() if hasattr(m, "get_output_embeddings") else None
    prefix = getattr(m, "base_model_prefix", None)
    if head is None or not prefix or not isinstance(getattr(m, prefix, None), torch.nn.Module):
        raise UnsupportedModelError(
            f"mindcore.integrations.patch: {name} has no output embeddings (LM head) and base model; "
            "pass a causal LM such as AutoModelForCausalLM.from_pretrained(...)")
    if not isinstance(head, torch.nn.Linear) or hasattr(head, "lora_A") or hasattr(head, "base_layer"):
        raise UnsupportedModelError(
            f"mindcore.integrations.patch: {name}'s LM head is a {type(head).__name__}, not a plain nn.Linear "
            "(LoRA / a wrapper on lm_head?); keep lm_head out of PEFT's target_modules")
    scale = logit_multiplier(m)
    if _OUT is None:
        _OUT = _output_class()
    state = _State(m, head, scale, return_logits, packed, ignore_index, provider, sample_reduction)
    object.__setattr__(m, _STATE, state)            # not a submodule / parameter: state_dict unchanged
    object.__setattr__(head, _STATE, state)
    m.forward = types.MethodType(_forward, m)
    head.forward = types.MethodType(_head_forward, head)
    return model


def unpatch(model):
    """Restore the stock forward of ``model`` (a no-op if it is not patched); returns the same object."""
    m = _target(model)
    st = getattr(m, _STATE, None)
    if st is None:
        return model
    for obj in (m, st.head):
        obj.__dict__.pop("forward", None)
        if st.saved.get(id(obj)) is not None:
            obj.forward = st.saved[id(obj)]
        object.__delattr__(obj, _STATE)
    return model


def is_patched(model) -> bool:
    return getattr(_target(model), _STATE, None) is not None
