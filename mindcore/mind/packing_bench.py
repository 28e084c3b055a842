"""Step time of padded vs packed batches on the demo preset: `python -m mindcore.mind.packing_bench`.

Interleaves the two layouts step by step (same questions, same student) so that a shared, noisy
machine slows both alike; prints the median step time of each and the padding share of the padded rows.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", default="mind")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--pack-len", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from . import data, tokenizer as tok
    from .config import TrainConfig
    from .demo import DEMO
    from .study import machine
    from .trainer import Trainer, load_splits
    base = TrainConfig(**dict(DEMO, mode=args.mode, n_train=200))
    splits = load_splits(base, list(data.PERSPECTIVES))
    tk = tok.build_tokenizer(tok.training_texts(splits["train"]), vocab_size=base.vocab_size)
    layouts = [("padded", dict(pack=False))] + [(f"packed{n}", dict(pack=True, pack_len=n)) for n in args.pack_len]
    trainers = {name: Trainer.from_config(TrainConfig(**dict(base.to_dict(), **kw)), log=lambda m: None,
                                          splits=splits, tokenizer=tk) for name, kw in layouts}
    times = {name: [] for name in trainers}
    pad = []
    for step in range(args.steps + 2):
        for name, tr in trainers.items():
            if name == "padded":
                b = tr._batch(tr.sampler._perm[tr.sampler.cursor:tr.sampler.cursor + base.questions_per_step])
                pad.append(1 - float(b.attention_mask.float().mean()))
            t0 = time.perf_counter()
            tr._train_step()
            if step >= 2:   # warm-up steps excluded
                times[name].append(time.perf_counter() - t0)
    med = {n: statistics.median(t) for n, t in times.items()}
    out = {"mode": args.mode, "steps": args.steps, "threads": torch.get_num_threads(), "machine": machine(),
           "padding_share": round(sum(pad) / len(pad), 3),
           "median_step_s": {n: round(v, 4) for n, v in med.items()},
           "speedup_vs_padded": {n: round(med["padded"] / v, 3) for n, v in med.items()}}
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
