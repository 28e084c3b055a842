"""End to end: one MIND training step in tokens/s, three ways.

A step = student forward over B questions x K paths, TA scoring of the paths (features: the
student's mean-pooled hidden states, detached), capability-aware selection, the alpha-weighted
per-path loss, student backward + AdamW step, the inertia update and the TA's listwise step.

- ``naive``: padded (B*K, L) batch, full logits from the model, the model's own loss function
  once per path.
- ``packed-reference``: the paths packed into one row (position_ids restart per path, so
  transformers builds a block-causal mask), final hidden states -> mindcore's loss with
  provider="reference".
- ``packed-fused``: the same with the best mindcore provider on the device (named in the note).

Students are transformers models built from the SmolLM2-135M / Qwen2.5-0.5B configs in code
(random weights, no hub download). ``--quick`` (the default on CPU) keeps 2 layers and short paths.

    python -m benchmarks.bench_mind_step --quick
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch
import torch.nn.functional as F

import mindcore
from mindcore import dispatch

from benchmarks import harness as H

OP = "mind_step"
VARIANTS = ["naive", "packed-reference", "packed-fused"]
# name: (config class, kwargs). Only fields common to transformers 4.45 ... 5.x.
MODELS = {
    "smollm2-135m": ("LlamaConfig", dict(vocab_size=49152, hidden_size=576, intermediate_size=1536,
                                         num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                                         max_position_embeddings=8192, tie_word_embeddings=True)),
    "qwen2.5-0.5b": ("Qwen2Config", dict(vocab_size=151936, hidden_size=896, intermediate_size=4864,
                                         num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                                         max_position_embeddings=32768, tie_word_embeddings=True)),
    "tiny": ("LlamaConfig", dict(vocab_size=503, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                                 tie_word_embeddings=True)),
}
K = 8  # perspectives per question


def build_model(name, layers, dtype, device):
    import transformers
    cls_name, kwargs = MODELS[name]
    cfg = getattr(transformers, cls_name)(**{**kwargs, **({"num_hidden_layers": layers} if layers else {})})
    torch.manual_seed(0)
    with torch.device(device):  # initialise on the device: a CPU init of 0.5B params takes seconds
        model = transformers.AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa")
    return model.to(dtype=dtype).train()


def make_paths(batch, vocab, prompt_len, path_len, seed=0):
    """B questions x K paths: (ids, labels) per path; labels already shifted, -100 on the prompt.

    Paths of one question share the prompt and end in the same 4 answer tokens.
    """
    g = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(batch):
        lp = int(torch.randint(prompt_len // 2, prompt_len + 1, (1,), generator=g))
        prompt = torch.randint(3, vocab, (lp,), generator=g)
        answer = torch.randint(3, vocab, (4,), generator=g)
        for _ in range(K):
            lr = int(torch.randint(path_len // 2, path_len + 1, (1,), generator=g))
            ids = torch.cat([prompt, torch.randint(3, vocab, (lr,), generator=g), answer])
            labels = torch.full_like(ids, -100)
            labels[lp - 1:-1] = ids[lp:]
            rows.append((ids, labels))
    return rows


class TAStandIn(torch.nn.Module):
    """Used only when mindcore.mind.ta is missing: an MLP scorer of the same cost class."""

    def __init__(self, d):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.LayerNorm(d), torch.nn.Linear(d, 64), torch.nn.GELU(),
                                       torch.nn.Linear(64, 1))

    def forward(self, features, valid=None):
        return F.softplus(self.net(features.float()).squeeze(-1))


def ta_parts(d, device):
    try:
        from mindcore.mind import ta
        return ta.TeachingAssistant(d).to(device), ta.select, ta.meta_loss, ""
    except Exception as exc:  # another helper owns ta.py; the bench still runs without it
        print(f"note: mindcore.mind.ta unavailable ({type(exc).__name__}: {exc}); using an MLP stand-in")

        def select(scores, valid, beta=0.7, tau_s=1.0):
            s = scores.detach().float()
            kept = valid & (s >= beta * s.masked_fill(~valid, float("-inf")).amax(-1, keepdim=True))
            return torch.softmax(s.masked_fill(~kept, float("-inf")), -1).nan_to_num(), kept

        def meta_loss(scores, target, valid, tau=1.0):
            return F.kl_div(torch.log_softmax(-target.detach() / tau, -1), torch.log_softmax(scores / tau, -1),
                            log_target=True, reduction="batchmean")
        return TAStandIn(d).to(device), select, meta_loss, "TA stand-in"


class Step:
    """One variant's training step; ``run()`` does everything a MIND step does."""

    def __init__(self, variant, model, rows, batch, device, provider=None):
        self.variant, self.model, self.device, self.batch = variant, model, device, batch
        self.provider = provider
        d = model.config.hidden_size
        self.ta, self.select, self.meta_loss, self.note = ta_parts(d, device)
        self.opt = torch.optim.AdamW(model.parameters(), lr=1e-5, foreach=True)
        self.ta_opt = torch.optim.AdamW(self.ta.parameters(), lr=1e-6)
        self.valid = torch.ones(batch, K, dtype=torch.bool, device=device)
        self.inertia = mindcore.InertiaState(batch * K, 0.9, device=device)
        self.tokens = sum(int((lab != -100).sum()) for _, lab in rows)
        if variant == "naive":
            L = max(len(ids) for ids, _ in rows)
            self.ids = torch.zeros(len(rows), L, dtype=torch.long)
            self.mask = torch.zeros(len(rows), L, dtype=torch.long)
            self.labels = torch.full((len(rows), L), -100, dtype=torch.long)
            for r, (ids, lab) in enumerate(rows):
                self.ids[r, :len(ids)], self.mask[r, :len(ids)], self.labels[r, :len(ids)] = ids, 1, lab
            self.ids, self.mask, self.labels = (t.to(device) for t in (self.ids, self.mask, self.labels))
            self.ema = torch.zeros(batch * K, device=device)
        else:
            self.ids = torch.cat([ids for ids, _ in rows])[None].to(device)
            self.pos = torch.cat([torch.arange(len(ids)) for ids, _ in rows])[None].to(device)
            self.targets = torch.cat([lab for _, lab in rows]).to(device)
            self.path_ids = torch.cat([torch.full((len(ids),), r) for r, (ids, _) in enumerate(rows)]).to(device)
            self.slots = torch.arange(batch * K, device=device)
            if provider is None:
                self.provider = dispatch.available_providers("perspective_cross_entropy", device,
                                                             next(model.parameters()).dtype)[0]
        if variant == "packed-fused":
            self.note = ";".join(filter(None, [self.note, f"provider={self.provider}"]))

    def _features(self, hidden):
        if self.variant == "naive":
            m = self.mask[..., None].float()
            feats = (hidden.detach().float() * m).sum(1) / m.sum(1)
        else:
            h = hidden.detach().float()
            sums = torch.zeros(self.batch * K, h.shape[-1], device=h.device).index_add_(0, self.path_ids, h)
            cnt = torch.bincount(self.path_ids, minlength=self.batch * K).clamp(min=1)[:, None]
            feats = sums / cnt
        return feats.view(self.batch, K, -1)

    def run(self):
        model = self.model
        if self.variant == "naive":
            out = model(input_ids=self.ids, attention_mask=self.mask, output_hidden_states=True)
            hidden = out.hidden_states[-1]
        else:
            hidden = model.model(input_ids=self.ids, position_ids=self.pos).last_hidden_state[0]
        scores = self.ta(self._features(hidden), self.valid)
        alpha, _ = self.select(scores, self.valid)
        weights = (alpha / self.batch).reshape(-1)
        if self.variant == "naive":
            v = model.config.vocab_size
            path_loss = torch.stack([  # the model's own loss, one path at a time (labels already shifted)
                model.loss_function(out.logits[r:r + 1], None, vocab_size=v, shift_labels=self.labels[r:r + 1])
                for r in range(self.ids.shape[0])])
            loss = (weights * path_loss).sum()
            with torch.no_grad():
                self.ema.mul_(0.9).add_(0.1 * path_loss.detach())
            target = self.ema
        else:
            out = mindcore.perspective_cross_entropy(
                hidden, model.get_output_embeddings().weight, self.targets, self.path_ids, weights,
                inertia=self.inertia, path_slots=self.slots, provider=self.provider)
            loss = out.loss
            target = self.inertia.value
        loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        ta_loss = self.meta_loss(scores, target.view(self.batch, K), self.valid)
        ta_loss.backward()
        self.ta_opt.step()
        self.ta_opt.zero_grad(set_to_none=True)
        return loss.detach()


def run(models, variants, dtype, device, out, quick, reps, batch=None, layers=None, path_len=None,
        memory=True):
    device = torch.device(device)
    env = H.environment(device)
    path = H.results_path(out, device)
    rows_out = []
    for name in models:
        lay = layers or (2 if quick else None)
        model = build_model(name, lay, dtype, device)
        cfg = model.config
        b = batch or (1 if quick else 4)
        plen = path_len or (48 if quick else 384)
        paths = make_paths(b, cfg.vocab_size, 16 if quick else 64, plen)
        shape = f"{name}-L{cfg.num_hidden_layers}"
        base_ms = None
        for variant in variants:
            row = H.make_row(env, op=OP, provider=variant, mode="fwd+bwd", dtype=H.DTYPE_NAME[dtype], shape=shape,
                             d=cfg.hidden_size, V=cfg.vocab_size, status="ok", note="")
            try:
                step = Step(variant, model, paths, b, device)
                row["N"], row["note"] = step.tokens, step.note
                times = []
                for i in range(reps + 1):  # first step warms up (allocations, optimizer state)
                    H.sync(device)
                    t0 = time.perf_counter()
                    step.run()
                    H.sync(device)
                    if i:
                        times.append(time.perf_counter() - t0)
                ms = [1e3 * t for t in times]
                row.update(median_ms=H.statistics.median(ms), p20_ms=H.percentile(ms, 0.2),
                           p80_ms=H.percentile(ms, 0.8), reps=reps)
                row["tokens_per_s"] = step.tokens / (row["median_ms"] / 1e3)
                if memory:
                    row.update(_step_memory(step, device))
                if variant == "naive":
                    base_ms = row["median_ms"]
                elif base_ms:
                    row["x_eager"] = row["median_ms"] / base_ms  # here: time relative to naive
                del step
            except Exception as exc:
                row.update(status="FAILED", note=f"{type(exc).__name__}: {str(exc)[:300]}")
            rows_out.append(row)
            H.append_rows(path, [row])
            H.print_row(row)
            model.zero_grad(set_to_none=True)
        del model
    print(f"rows appended to {path}")
    return rows_out


def _step_memory(step, device):
    """Peak of one step beyond what was resident before it (weights, optimizer state, batch).

    In-process: CUDA max_memory_allocated; CPU peak RSS (VmHWM after clear_refs).
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        step.run()
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device)
    else:
        base = H._status_kib("VmRSS:") * 1024
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        step.run()
        peak = H._status_kib("VmHWM:") * 1024
    return {"peak_mem_mb": peak / 2**20, "extra_mem_mb": (peak - base) / 2**20}


def main(argv=None):
    p = H.base_parser(__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="2 layers, 1 question, short paths (default on CPU)")
    p.add_argument("--full", action="store_true", help="full layer counts even on CPU")
    p.add_argument("--batch", type=int, help="questions per step (K=8 paths each)")
    p.add_argument("--layers", type=int, help="override the layer count")
    p.add_argument("--path-len", type=int, help="max rationale tokens per path")
    p.set_defaults(reps=3, dtypes=None)
    args = p.parse_args(argv)
    device = torch.device(args.device)
    quick = args.quick or (device.type == "cpu" and not args.full)
    models = args.shapes or ["smollm2-135m", "qwen2.5-0.5b"]
    bad = [m for m in models if m not in MODELS]
    if bad:
        raise SystemExit(f"--shapes: unknown model {bad}; choose from {sorted(MODELS)}")
    variants = args.providers or VARIANTS
    dtype = H.parse_dtypes(args.dtypes or (["fp32"] if device.type == "cpu" else ["bf16"]))[0]
    rows = run(models, variants, dtype, device, args.out, quick, args.reps, args.batch, args.layers,
               args.path_len, memory=not args.no_memory)
    if args.compare:
        return H.finish_with_compare(rows, args.compare)
    return 0


if __name__ == "__main__":
    sys.exit(main())
