"""One trainer for every mode, so the comparison is honest: same student, data order, optimiser,
schedule and step budget; only the path weights and the extra terms differ.

Modes (config.MODES):
  single            one golden path per question. Under protocol equal_questions (default) it draws the
                    same questions as every mode; under equal_rows K x more, one row each (protocols.py).
  uniform           all K paths of questions_per_step questions, equal weights.
  consistency       uniform + lambda * L_cons (MCC-KD style).
  mind              TA scores -> selection (beta) -> alpha; L_SFT(alpha) + lambda * L_cons(alpha);
                    the TA learns from the inertia-smoothed path losses (slow optimiser).
  mind-no-inertia   the TA target is the instantaneous path loss instead of the smoothed one.
  mind-no-synergy   the TA without its self-attention across paths.

Host syncs: one per optimiser step (the finiteness decision and the logged metrics travel together).
"""
from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass

import torch

from .. import InertiaState, perspective_cross_entropy
from ..ops import answer_consistency
from . import checkpoint as ckpt
from . import distributed as D
from . import packing, protocols
from .config import TrainConfig
from .guard import StepGuard
from .ta import TATarget, TeachingAssistant, meta_loss, select, uniform_weights

CKPT_NAME = "checkpoint.pt"
METRICS_NAME = "metrics.jsonl"


class QuestionSampler:
    """Seeded epoch permutations over question indices; its state is the data position."""

    def __init__(self, n: int, seed: int):
        if n < 1:
            raise ValueError("QuestionSampler: the training set is empty; give at least one record")
        self.n, self.seed, self.epoch, self.cursor = n, seed, 0, 0
        self._perm = self._permutation()

    def _permutation(self):
        g = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
        return torch.randperm(self.n, generator=g)

    def next(self, count: int) -> torch.Tensor:
        out = []
        while count > 0:
            take = min(count, self.n - self.cursor)
            out.append(self._perm[self.cursor:self.cursor + take])
            self.cursor += take
            count -= take
            if self.cursor == self.n:
                self.epoch, self.cursor = self.epoch + 1, 0
                self._perm = self._permutation()
        return torch.cat(out)

    def state_dict(self):
        return {"epoch": self.epoch, "cursor": self.cursor}

    def load_state_dict(self, s):
        self.epoch, self.cursor = s["epoch"], s["cursor"]
        self._perm = self._permutation()


def lr_lambda(cfg: TrainConfig):
    """Linear warm-up, then cosine down to min_lr_ratio at cfg.steps (values captured now)."""
    warm, total, floor = cfg.warmup_steps, cfg.steps, cfg.min_lr_ratio

    def f(step):
        if step < warm:
            return (step + 1) / warm
        progress = min(1.0, (step - warm) / max(1, total - warm))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    return f


class _Hidden(torch.nn.Module):
    """The student up to its final hidden states (what DDP wraps); the LM head runs in the fused op."""

    def __init__(self, lm):
        super().__init__()
        self.lm = lm

    def forward(self, input_ids, attention_mask, position_ids):
        base = getattr(self.lm, self.lm.base_model_prefix)
        return base(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                    use_cache=False).last_hidden_state


@dataclass
class MicroOut:
    total: torch.Tensor       # student objective (L_SFT + lambda L_cons)
    sft: torch.Tensor
    cons: torch.Tensor
    meta: torch.Tensor
    alpha: torch.Tensor       # (B, K) with zeros for missing perspectives in `single`
    path_loss: torch.Tensor   # (B, K)
    valid: torch.Tensor       # (B, K)
    kept: torch.Tensor        # (B, K)
    tokens: torch.Tensor      # supervised tokens


class Trainer:
    """Build with :meth:`from_config` (data, tokenizer, student from the config) or inject the parts.

    batch_fn(records, golden_only) -> PathBatch (see batching.make_batch); evaluate_fn(model, tokenizer,
    records) -> {"accuracy", ...}.
    """

    def __init__(self, cfg: TrainConfig, model, tokenizer, train_records, perspectives, batch_fn,
                 evaluate_fn=None, log=None):
        cfg.validate(perspectives)
        self.cfg, self.model, self.tokenizer = cfg, model, tokenizer
        self.records, self.batch_fn, self.evaluate_fn = train_records, batch_fn, evaluate_fn
        self.perspectives = list(cfg.perspectives or perspectives)
        self.K = len(self.perspectives)
        self.golden_index = self.perspectives.index(cfg.golden)
        self.dist = D.current()
        self.device = torch.device(cfg.device)
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        if not self.dist.is_main:  # one progress stream under torchrun: rank 0's
            self.log = lambda msg: None
        self.model.to(self.device)
        self.core = _Hidden(model)
        self.fsdp = cfg.fsdp
        self._export = None      # under FSDP: rank 0's unsharded copy for evaluation and saving
        if self.fsdp:
            if not self.dist.enabled:
                raise ValueError("config fsdp=true shards the student over processes: run it under torchrun "
                                 "(torchrun --nproc_per_node N -m mindcore train ...), or set fsdp: false")
            if self.device.type == "cuda":
                torch.cuda.set_device(self.device)
            self._export = copy.deepcopy(model).cpu() if self.dist.is_main else None
            D.shard_student(self.core, model)
        elif self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.core = torch.nn.parallel.DistributedDataParallel(self.core, device_ids=ids)
        self.autocast = cfg.bf16 and self.device.type == "cuda"
        trainable = [p for p in model.parameters() if p.requires_grad]   # LoRA: the adapters only
        self.opt = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lr_lambda(cfg))
        self.inertia = InertiaState(len(train_records) * self.K, cfg.momentum, device=self.device)
        self.ta = self.ta_opt = self.ta_warm_opt = None
        self.ta_target = TATarget(cfg.ta_target, self.inertia, self.K)
        if cfg.uses_ta:
            torch.manual_seed(cfg.seed + 1)  # TA init independent of how the student was built
            self.ta = TeachingAssistant(model.config.hidden_size, cfg.ta_hidden, cfg.ta_heads,
                                        cfg.ta_score_heads, synergy=cfg.mode != "mind-no-synergy").to(self.device)
            self.ta_opt = torch.optim.AdamW(self.ta.parameters(), lr=cfg.lr * cfg.ta_lr_scale)
            self.ta_warm_opt = torch.optim.AdamW(self.ta.parameters(), lr=cfg.lr * cfg.ta_warmup_lr_scale)
        # the student's data order is the same in every multi-path mode; the TA warm-up draws its own
        self.sampler = QuestionSampler(len(train_records), cfg.seed)
        self.warm_sampler = QuestionSampler(len(train_records), cfg.seed + 7919)
        self.step = self.ta_warm_done = self.ta_micro = 0
        self.tokens_seen = 0
        self.questions_seen = 0  # questions drawn by training steps, all ranks (the protocols' accounting)
        self.skipped = 0
        self.history = []       # metric rows of this process (also written to metrics.jsonl)
        self.wall_s = 0.0       # training wall time, summed over resumed segments
        self.stopped_early = False

    # ---------- construction from a config ----------
    @classmethod
    def from_config(cls, cfg: TrainConfig, log=None, splits=None, tokenizer=None):
        """Data (built-in or JSONL), tokenizer and student from the config; all input checked first.

        ``splits`` / ``tokenizer`` let several runs (the demo's modes) share one dataset and vocabulary.
        """
        from . import batching, data, evaluate, student, tokenizer as tok
        cfg.validate(data.PERSPECTIVES)
        persp = list(cfg.perspectives or data.PERSPECTIVES)
        splits = splits or load_splits(cfg, persp)
        if cfg.perspectives:
            splits = {k: data.filter_perspectives(v, persp) for k, v in splits.items()}
        tk = tokenizer
        if tk is None and cfg.student == "tiny-llama":
            tk = tok.build_tokenizer(tok.training_texts(splits["train"]), vocab_size=cfg.vocab_size)
        ckpt.seed_all(cfg.seed)  # the same initial student in every mode; python/numpy too, for reproducibility
        model, tk = student.build_student(cfg.student, tokenizer=tk, device=cfg.device)
        if cfg.lora_r:
            model = student.add_lora(model, cfg.lora_r)

        def batch_fn(records, golden_only=None):
            return batching.make_batch(records, tk, persp, cfg.max_len, golden_only=golden_only)

        def evaluate_fn(m, t, recs):
            return evaluate.evaluate(m, t, recs, max_new_tokens=cfg.eval_max_new_tokens,
                                     batch_size=cfg.eval_batch_size, device=cfg.device)
        trainer = cls(cfg, model, tk, splits["train"], persp, batch_fn, evaluate_fn, log=log)
        trainer.eval_splits = {"id": splits["id_eval"], "ood": splits["ood_eval"]}
        return trainer

    # ---------- one micro-batch ----------
    def _rows_per_question(self):
        return protocols.rows_per_question(self.cfg.mode, self.K)

    def _local_questions(self):
        return protocols.questions_per_micro(self.cfg.mode, self.cfg.protocol, self.cfg.questions_per_step, self.K)

    def _draw(self, sampler):
        """This rank's slice of the global batch (same global order as one process with world x B)."""
        n = self._local_questions()
        idx = sampler.next(n * self.dist.world)
        return idx[self.dist.rank * n:(self.dist.rank + 1) * n]

    def _batch(self, idx):
        recs = [self.records[i] for i in idx.tolist()]
        batch = self.batch_fn(recs, self.cfg.golden if self.cfg.mode == "single" else None)
        kq = self._rows_per_question()
        if batch.input_ids.shape[0] != len(recs) * kq:
            raise RuntimeError(f"batch_fn returned {batch.input_ids.shape[0]} rows for {len(recs)} questions "
                               f"x {kq} paths; rows must be question-major (row r = question r // K)")
        return batch

    def _view(self, batch):
        """The model-input and loss-side view: packed (padding-free) or the padded rows as they are."""
        varlen = getattr(self.model.config, "_attn_implementation", None) == "flash_attention_2"
        if not (varlen if self.cfg.pack is None else self.cfg.pack):
            return packing.flat_view(batch)
        return packing.flat_view(packing.pack(batch, self.cfg.pack_len), varlen=varlen)

    def _forward(self, fv):
        dev = self.device
        ctx = torch.autocast("cuda", dtype=torch.bfloat16) if self.autocast else contextlib.nullcontext()
        mask = None if fv.attention_mask is None else fv.attention_mask.to(dev)
        with ctx:
            return self.core(fv.input_ids.to(dev), mask, fv.position_ids.to(dev))

    def _head(self):
        head = self.model.get_output_embeddings()
        return head.weight, getattr(head, "bias", None)

    def _micro(self, batch, idx, student_grad=True):
        cfg, dev = self.cfg, self.device
        b, kq = len(idx), self._rows_per_question()
        r = b * kq
        fv = self._view(batch)
        with (contextlib.nullcontext() if student_grad else torch.no_grad()):
            hidden = self._forward(fv)
        hidden = hidden.reshape(-1, hidden.shape[-1])   # (N, d) tokens of every row, either layout
        weight, bias = self._head()
        dt = torch.bfloat16 if self.autocast else weight.dtype
        w = weight.to(dt) if student_grad else weight.detach().to(dt)
        bb = None if bias is None else (bias.to(dt) if student_grad else bias.detach().to(dt))
        persp = (torch.full((r,), self.golden_index, device=dev) if kq == 1
                 else torch.arange(self.K, device=dev).repeat(b))
        slots = idx.to(dev).repeat_interleave(kq) * self.K + persp
        labels = fv.labels.to(dev)
        valid = (batch.labels != -100).any(1).to(dev)
        if getattr(batch, "path_mask", None) is not None:  # placeholder rows of missing perspectives
            valid = valid & batch.path_mask.to(dev)
        valid = valid.view(b, kq)
        path_ids = fv.token_path.to(dev)
        feats = None
        if self.ta is not None:
            feats = packing.pool_paths(hidden, path_ids, fv.token_real.to(dev), r).view(b, kq, -1)
        scores = self.ta(feats, valid) if self.ta is not None else None
        if self.ta is not None:
            alpha, kept = select(scores, valid, cfg.beta, cfg.tau_s)
        else:
            alpha, kept = uniform_weights(valid), valid
        common = dict(bias=bb, provider=cfg.provider)
        before = self.ta_target.before(slots) if self.ta is not None else None
        if self.dist.enabled:  # per-slot sums are all-reduced before the inertia update
            out = perspective_cross_entropy(hidden.to(dt), w, labels, path_ids,
                                            alpha.reshape(r) / b, **common)
            slot_loss, slot_tok = D.slot_observation(out.path_loss, out.path_tokens, slots, self.inertia.num_slots)
            self.inertia.update(slot_loss, slot_tok, torch.arange(self.inertia.num_slots, device=dev))
        else:
            out = perspective_cross_entropy(hidden.to(dt), w, labels, path_ids,
                                            alpha.reshape(r) / b, inertia=self.inertia, path_slots=slots, **common)
        path_loss = out.path_loss.view(b, kq)
        zero = hidden.new_zeros((), dtype=torch.float32)
        cons = zero
        ans_logits = None   # answer-row logits, shared with the answer_span target when both need them
        if cfg.uses_cons and student_grad and kq > 1 and cfg.lam > 0:
            pos = fv.answer_flat.to(dev)
            h_ans = hidden[pos]   # (r, A, d): the answer-span rows of every path
            logits = h_ans.float() @ weight.float().t()  # answer rows only, never the full logits
            if bias is not None:
                logits = logits + bias.float()
            a = pos.shape[1]
            ans_logits = logits.detach()
            cons = answer_consistency(logits.view(b, kq, a, -1), fv.answer_mask.to(dev).view(b, kq, a), alpha)
        meta = zero
        if self.ta is not None:
            if self.ta_target.needs_answer_logits:   # ablation ta_target=answer_span
                pos = fv.answer_flat.to(dev)
                if ans_logits is None:
                    ans_logits = hidden[pos].detach().float() @ weight.detach().float().t()
                    if bias is not None:
                        ans_logits = ans_logits + bias.detach().float()
                self.ta_target.observe_answer(ans_logits, labels[pos], fv.answer_mask.to(dev), slots,
                                              reduce=self.dist.enabled)
            target = self.ta_target(path_loss, slots, before, instantaneous=cfg.mode == "mind-no-inertia")
            meta = meta_loss(scores, target, valid, cfg.tau)
        full_alpha = torch.zeros(b, self.K, device=dev)
        full_pl = torch.zeros(b, self.K, device=dev)
        full_valid = torch.zeros(b, self.K, dtype=torch.bool, device=dev)
        full_kept = torch.zeros_like(full_valid)
        cols = persp.view(b, kq)
        full_alpha.scatter_(1, cols, alpha)
        full_pl.scatter_(1, cols, path_loss)
        full_valid.scatter_(1, cols, valid)
        full_kept.scatter_(1, cols, kept)
        return MicroOut(out.loss + cfg.lam * cons, out.loss.detach(), cons.detach(), meta, full_alpha, full_pl,
                        full_valid, full_kept, out.path_tokens.sum())

    # ---------- stages ----------
    def _ta_warmup(self):
        """TA alone on the current student's losses (the student does not move)."""
        cfg = self.cfg
        while self.ta is not None and self.ta_warm_done < cfg.ta_warmup_steps:
            idx = self._draw(self.warm_sampler)
            guard = StepGuard(self)
            m = self._micro(self._batch(idx), idx, student_grad=False)
            self.ta_warm_opt.zero_grad(set_to_none=True)
            m.meta.backward()
            D.average_grads_(list(self.ta.parameters()))
            gn = torch.nn.utils.clip_grad_norm_(self.ta.parameters(), cfg.grad_clip)
            ok = D.all_reduce_((~torch.isfinite(m.meta + gn)).float())
            if float(ok) == 0:  # one sync per warm-up step
                self.ta_warm_opt.step()
            else:
                guard.restore(self)
                warnings.warn(f"TA warm-up step {self.ta_warm_done + 1}: non-finite loss or gradient; skipped")
            self.ta_warm_opt.zero_grad(set_to_none=True)
            self.ta_warm_done += 1
            if self.ta_warm_done % cfg.log_every == 0 or self.ta_warm_done == cfg.ta_warmup_steps:
                self._emit({"phase": "ta_warmup", "ta_step": self.ta_warm_done, "meta": float(m.meta.detach())})

    def _train_step(self):
        cfg = self.cfg
        acc = None
        guard = StepGuard(self)
        for micro in range(cfg.accum):
            idx = self._draw(self.sampler)
            batch = self._batch(idx)
            sync = self.dist.enabled and micro < cfg.accum - 1
            if self.fsdp:  # reduce-scatter on the last micro-batch only
                self.core.set_requires_gradient_sync(not sync)
            with (self.core.no_sync() if sync and not self.fsdp else contextlib.nullcontext()):
                m = self._micro(batch, idx)
                obj = m.total / cfg.accum
                if self.ta is not None:
                    obj = obj + m.meta / (cfg.accum * cfg.ta_accum_scale)
                obj.backward()
            vals = [m.total.detach(), m.sft, m.cons, m.meta.detach(), m.tokens.float()]
            part = dict(scal=torch.stack(vals), alpha=m.alpha.sum(0), pl=(m.path_loss * m.valid).sum(0),
                        nv=m.valid.sum(0).float(), kept=m.kept.sum(0).float(), nq=float(len(idx)))
            acc = part if acc is None else {k: acc[k] + part[k] for k in acc}
        gnorm = D.clip_grad_norm_(self.model.parameters(), cfg.grad_clip, self.device)
        ta_end = self.ta is not None and (self.ta_micro + 1) % cfg.ta_accum_scale == 0
        ta_gn = torch.zeros((), device=self.device)
        if ta_end:
            D.average_grads_(list(self.ta.parameters()))
            ta_gn = torch.nn.utils.clip_grad_norm_(self.ta.parameters(), cfg.grad_clip)
        bad = (~torch.isfinite(acc["scal"].sum() + gnorm + ta_gn + guard.ta_grad_sum(self))).float().reshape(1)
        D.all_reduce_(bad)
        D.all_reduce_(acc["scal"])  # global means for the log (the same on every rank)
        acc["scal"] /= self.dist.world
        v = self.inertia.value.view(-1, self.K)
        seen = (self.inertia.count.view(-1, self.K) > 0).float()
        smooth = (v * seen).sum(0) / seen.sum(0).clamp(min=1)
        packed = torch.cat([bad, acc["scal"] / cfg.accum, gnorm.reshape(1).float(), acc["alpha"] / acc["nq"],
                            acc["pl"] / acc["nv"].clamp(min=1), acc["kept"] / acc["nq"], smooth]).tolist()  # the sync
        ok = packed[0] == 0
        if ok:
            self.opt.step()
            if ta_end:
                self.ta_opt.step()
        else:
            self.skipped += 1
            warnings.warn(f"step {self.step + 1}: non-finite loss or gradient; step skipped, state unchanged")
        self.opt.zero_grad(set_to_none=True)
        if ta_end:
            self.ta_opt.zero_grad(set_to_none=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "scheduler.step() before optimizer.step()" on skipped steps
            self.sched.step()
        if self.ta is not None:
            self.ta_micro += 1
        if not ok:  # inertia, the TA gradient window and its counter as before the step
            guard.restore(self)
        self.step += 1
        k = self.K
        scal, rest = packed[1:6], packed[7:]
        tokens = int(round(scal[4] * self.dist.world))
        self.tokens_seen += tokens
        self.questions_seen += int(acc["nq"]) * self.dist.world
        row = {"phase": "train", "step": self.step, "mode": cfg.mode, "loss": scal[0], "sft": scal[1],
               "cons": scal[2], "meta": scal[3], "grad_norm": packed[6], "lr": self.sched.get_last_lr()[0],
               "tokens": tokens, "skipped": not ok,
               "alpha": dict(zip(self.perspectives, rest[:k])),
               "path_loss": dict(zip(self.perspectives, rest[k:2 * k])),
               "kept": dict(zip(self.perspectives, rest[2 * k:3 * k])),
               "smoothed_loss": dict(zip(self.perspectives, rest[3 * k:4 * k]))}
        self._emit(row)
        return row

    # ---------- the run ----------
    def train(self, out_dir=None, resume=False, stop_at=None):
        """Run (or, with resume, continue) to cfg.steps; stop_at ends early after that step's checkpoint."""
        cfg = self.cfg
        last = cfg.steps if stop_at is None else min(cfg.steps, stop_at)
        out_dir = out_dir or cfg.out_dir
        self.out_dir = out_dir
        # rank 0 decides: every rank resumes, or none does (a split decision deadlocks the first collective)
        if out_dir and resume and D.broadcast_object(os.path.exists(os.path.join(out_dir, CKPT_NAME))):
            self.load_checkpoint(os.path.join(out_dir, CKPT_NAME))
        elif out_dir and self.dist.is_main:
            os.makedirs(out_dir, exist_ok=True)
            open(os.path.join(out_dir, METRICS_NAME), "w").close()
        t0 = time.perf_counter()
        base_wall = self.wall_s
        self._ta_warmup()
        bar = None
        try:
            from tqdm import tqdm
            bar = tqdm(total=cfg.steps, initial=self.step, desc=cfg.mode, file=sys.stderr,
                       disable=not (sys.stderr.isatty() and self.dist.is_main))
        except ImportError:
            pass
        while self.step < last:
            if cfg.max_wall_s is not None and base_wall + time.perf_counter() - t0 > cfg.max_wall_s:
                self.stopped_early = True
                self.log(f"[{cfg.mode}] wall-clock guard ({cfg.max_wall_s:.0f} s) reached at step {self.step}")
                break
            row = self._train_step()
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{row['loss']:.3f}")
            if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                self.log(f"[{cfg.mode}] step {self.step}/{cfg.steps} loss {row['loss']:.4f} sft {row['sft']:.4f} "
                         f"cons {row['cons']:.4f} meta {row['meta']:.4f} lr {row['lr']:.2e}")
            if out_dir and cfg.ckpt_every and self.step % cfg.ckpt_every == 0:
                self.wall_s = base_wall + time.perf_counter() - t0
                self.save_checkpoint(os.path.join(out_dir, CKPT_NAME))
        if bar is not None:
            bar.close()
        self.wall_s = base_wall + time.perf_counter() - t0
        if out_dir:
            self.save_checkpoint(os.path.join(out_dir, CKPT_NAME))
        return {"steps": self.step, "tokens": self.tokens_seen, "skipped": self.skipped,
                "wall_s": self.wall_s, "stopped_early": self.stopped_early}

    def _emit(self, row):
        self.history.append(row)
        if getattr(self, "out_dir", None) and self.dist.is_main:
            with open(os.path.join(self.out_dir, METRICS_NAME), "a") as f:
                f.write(json.dumps(row) + "\n")

    # ---------- checkpoint / resume ----------
    def state_dict(self):
        """Everything a resume needs. Under FSDP a collective (every rank calls; rank 0 gets the weights)."""
        if self.fsdp:   # full, FQN-keyed (no shard layout): the weights load without FSDP too
            model_s, opt_s = D.full_state(self.model, self.opt)
        else:
            model_s, opt_s = self.model.state_dict(), self.opt.state_dict()
        s = {"config": self.cfg.to_dict(), "step": self.step, "ta_warm_done": self.ta_warm_done,
             "ta_micro": self.ta_micro, "tokens_seen": self.tokens_seen, "questions_seen": self.questions_seen, "skipped": self.skipped,
             "wall_s": self.wall_s, "model": model_s, "opt": opt_s, "opt_format": "fqn" if self.fsdp else "index",
             "sched": self.sched.state_dict(), "inertia": self.inertia.state_dict(),
             "sampler": self.sampler.state_dict(), "warm_sampler": self.warm_sampler.state_dict(),
             "rng": ckpt.rng_state(), "history_len": len(self.history)}
        if self.ta is not None:
            s.update(ta_target=self.ta_target.state_dict(), ta=self.ta.state_dict(), ta_opt=self.ta_opt.state_dict(),
                     ta_warm_opt=self.ta_warm_opt.state_dict(),
                     ta_grads=[None if p.grad is None else p.grad.detach().cpu().clone() for p in self.ta.parameters()])
        return s

    def save_checkpoint(self, path):
        s = self.state_dict() if self.fsdp or self.dist.is_main else None
        if self.dist.is_main:
            ckpt.atomic_save(s, path)
        D.barrier()  # no rank goes on (and may resume from this file) before it is written

    def load_checkpoint(self, path):
        s = ckpt.load(path)
        if s["config"]["mode"] != self.cfg.mode:
            raise ckpt.CheckpointError(f"checkpoint {path!r} is from mode {s['config']['mode']!r}, this run is {self.cfg.mode!r}; "
                                      f"pass --mode {s['config']['mode']} or a fresh --out")
        fmt = s.get("opt_format", "index")
        if fmt != ("fqn" if self.fsdp else "index"):
            raise ckpt.CheckpointError(f"checkpoint {path!r} was written with fsdp={fmt == 'fqn'}, this run has "
                                       f"fsdp={self.fsdp}; resume with the same fsdp setting (the weights alone "
                                       f"load either way: mindcore eval, or build_student on the saved student)")
        if self.fsdp:
            D.load_full_state(self.model, s["model"], self.opt, s["opt"])
        else:
            self.model.load_state_dict(s["model"])
            self.opt.load_state_dict(s["opt"])
        self.sched.load_state_dict(s["sched"])
        self.inertia.load_state_dict(s["inertia"])
        self.inertia.to(self.device)
        self.sampler.load_state_dict(s["sampler"])
        self.warm_sampler.load_state_dict(s["warm_sampler"])
        for k in ("step", "ta_warm_done", "ta_micro", "tokens_seen", "skipped", "wall_s"):
            setattr(self, k, s[k])
        self.questions_seen = s.get("questions_seen", 0)
        if self.ta is not None:
            self.ta.load_state_dict(s["ta"])
            self.ta_target.load_state_dict(s.get("ta_target", {}))
            self.ta_opt.load_state_dict(s["ta_opt"])
            self.ta_warm_opt.load_state_dict(s["ta_warm_opt"])
            for p, g in zip(self.ta.parameters(), s["ta_grads"]):
                p.grad = None if g is None else g.to(p.device)
        ckpt.set_rng_state(s["rng"])
        if getattr(self, "out_dir", None) and self.dist.is_main:  # drop metric rows written after the save
            self.history = ckpt.truncate_jsonl(os.path.join(self.out_dir, METRICS_NAME), s["history_len"])

    # ---------- evaluation ----------
    def export_model(self):
        """The student as one plain module (to evaluate or save): the model itself, or under FSDP rank 0's
        unsharded CPU copy, refreshed from the shards. A collective under FSDP: every rank calls it, and
        ranks other than 0 get None."""
        if not self.fsdp:
            return self.model
        model_s, _ = D.full_state(self.model)
        if self._export is not None:
            self._export.load_state_dict(model_s)
        return self._export

    def evaluate(self, records, max_n=None):
        """Greedy accuracy on ``records``. Under torchrun every rank calls it: rank 0 evaluates (the
        unsharded student under FSDP) and every rank returns its result."""
        if self.evaluate_fn is None:
            raise RuntimeError("Trainer.evaluate: no evaluate_fn was given")
        max_n = self.cfg.eval_max_n if max_n is None else max_n
        recs = records[:max_n] if max_n else records
        model = self.export_model()
        result = None
        if self.dist.is_main:
            if self.fsdp:
                model.to(self.device)
            model.eval()
            try:
                with torch.no_grad():
                    result = self.evaluate_fn(model, self.tokenizer, recs)
            finally:
                model.train()
                if self.fsdp:
                    model.cpu()
        return D.broadcast_object(result)


def load_splits(cfg: TrainConfig, perspectives):
    """train / id_eval / ood_eval records: the built-in dataset or the config's JSONL files."""
    from . import data
    if cfg.train_file:
        for name in ("train_file", "id_eval_file", "ood_eval_file"):
            path = getattr(cfg, name)
            if path is None or not os.path.exists(path):
                raise FileNotFoundError(f"config {name}={path!r} does not exist; give train_file, id_eval_file "
                                        f"and ood_eval_file as JSONL paths (or none for the built-in data)")
        return {"train": data.load_jsonl(cfg.train_file, perspectives),
                "id_eval": data.load_jsonl(cfg.id_eval_file, perspectives),
                "ood_eval": data.load_jsonl(cfg.ood_eval_file, perspectives)}
    extra = {"ood_variants": cfg.ood_variants} if cfg.ood_variants else {}
    return data.builtin_dataset(seed=cfg.data_seed, n_train=cfg.n_train, n_id=cfg.n_id, n_ood=cfg.n_ood,
                                max_terms=cfg.max_terms, **extra)
