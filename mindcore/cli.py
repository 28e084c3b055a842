"""The `mindcore` command: demo | train | eval | synthesize | info."""
from __future__ import annotations

import argparse
import json
import os
import sys


def _demo(args):
    from .mind.demo import parse_modes, run_demo
    run_demo(args.out, modes=parse_modes(args.modes), budget_s=args.budget_s, steps=args.steps,
             threads=args.threads, seeds=args.seeds)
    return 0


def _train(args):
    from .mind import distributed as D
    from .mind.config import load_config
    from .mind.student import save_student
    from .mind.trainer import Trainer
    cfg = load_config(args.config, mode=args.mode, steps=args.steps, out_dir=args.out, device=args.device)
    if not cfg.out_dir:
        raise SystemExit("mindcore train: give --out DIR (or out_dir in the config) for checkpoints and metrics")
    if cfg.extra.get("study") and args.mode is None:   # a study preset: every mode, seed and protocol
        from .mind.study import run_from_config
        run_from_config(cfg, cfg.out_dir)
        return 0
    info = D.init_from_env(cfg.device)
    if info.enabled and cfg.device.startswith("cuda"):
        cfg.device = f"cuda:{info.local_rank}"
    tr = Trainer.from_config(cfg)
    summary = tr.train(out_dir=cfg.out_dir, resume=args.resume)
    if info.is_main:
        save_student(tr.model, tr.tokenizer, os.path.join(cfg.out_dir, "student"))
        with open(os.path.join(cfg.out_dir, "config.json"), "w") as f:
            json.dump(cfg.to_dict(), f, indent=2)
        result = dict(summary)
        if not args.no_eval:
            for split in ("id", "ood"):
                result[f"{split}_accuracy"] = tr.evaluate(tr.eval_splits[split])["accuracy"]
        with open(os.path.join(cfg.out_dir, "result.json"), "w") as f:
            json.dump(result, f, indent=2)
        print(json.dumps(result))
    return 0


def _eval(args):
    from .mind import evaluate
    from .mind.config import TrainConfig
    from .mind.student import build_student
    from .mind.trainer import load_splits
    cfg_path = os.path.join(args.run, "config.json")
    if not os.path.exists(cfg_path):
        raise SystemExit(f"mindcore eval: {cfg_path} does not exist; pass --run DIR of a finished `mindcore train`")
    cfg = TrainConfig.from_dict(json.load(open(cfg_path)))
    from .mind.data import PERSPECTIVES
    splits = load_splits(cfg, list(cfg.perspectives or PERSPECTIVES))
    model, tk = build_student(os.path.join(args.run, "student"), device=args.device or cfg.device)
    out = {}
    for split in ("id", "ood"):
        recs = splits[f"{split}_eval"][:args.max_n] if args.max_n else splits[f"{split}_eval"]
        res = evaluate.evaluate(model, tk, recs, max_new_tokens=cfg.eval_max_new_tokens,
                                batch_size=cfg.eval_batch_size, device=args.device or cfg.device)
        out[f"{split}_accuracy"], out[f"{split}_n"] = res["accuracy"], res["n"]
    print(json.dumps(out))
    return 0


def _synthesize(argv):
    from .mind.synthesize import main as synth_main
    return synth_main(argv)


def _info(args):
    from .info import main as info_main
    return info_main() or 0


def build_parser():
    p = argparse.ArgumentParser(prog="mindcore", description="MIND multi-perspective CoT distillation engine")
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("demo", help="compare modes under both protocols on built-in data, seeds, report (<10 min on 2 CPUs)")
    d.add_argument("--out", required=True, help="output directory (report.json, plots, metrics)")
    d.add_argument("--modes", default=None, help="comma-separated modes (default single,uniform,consistency,mind; "
                   "also mind-no-inertia, mind-no-synergy)")
    d.add_argument("--seeds", type=int, default=3, help="at most this many seeds (fewer if the budget runs out)")
    d.add_argument("--budget-s", type=float, default=540.0, help="total wall-clock budget, split across modes")
    d.add_argument("--steps", type=int, default=None, help="step budget per mode (default: the demo preset)")
    d.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores; use 1 on a shared machine)")
    t = sub.add_parser("train", help="train one mode from a YAML config (runs under torchrun too)")
    t.add_argument("--config", required=True)
    t.add_argument("--out", default=None)
    t.add_argument("--mode", default=None)
    t.add_argument("--steps", type=int, default=None)
    t.add_argument("--device", default=None)
    t.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt if present")
    t.add_argument("--no-eval", action="store_true")
    e = sub.add_parser("eval", help="accuracy of a trained run on its id and ood splits")
    e.add_argument("--run", required=True, help="the --out directory of `mindcore train`")
    e.add_argument("--max-n", type=int, default=None)
    e.add_argument("--device", default=None)
    sub.add_parser("synthesize", help="teacher records from a local HF model (see `mindcore synthesize -h`)",
                   add_help=False)
    sub.add_parser("info", help="build and provider report")
    return p


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "synthesize":
        return _synthesize(argv[1:])
    args = build_parser().parse_args(argv)
    from .mind.config import ConfigError
    try:
        return {"demo": _demo, "train": _train, "eval": _eval, "info": _info}[args.cmd](args)
    except (ConfigError, FileNotFoundError) as exc:
        print(f"mindcore {args.cmd}: error: {exc}", file=sys.stderr)
        return 2
