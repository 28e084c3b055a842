"""The `mindcore` command: demo | train | eval | synthesize | info.

A user error (bad config, record, flag, path or checkpoint) is one line on stderr naming what is wrong
and the fix, exit status 2; ``--debug`` (or MINDCORE_DEBUG=1) shows the traceback instead.
"""
from __future__ import annotations

import argparse
import json
import os
import sys


class UsageError(ValueError):
    """A bad flag or path found by the command itself."""


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line (what, and where to look) rather than usage + error."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}; see '{self.prog} -h'\n")


def _positive(kind):
    def parse(text):
        try:
            val = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {kind.__name__}") from None
        if not val > 0:
            raise argparse.ArgumentTypeError(f"{text!r} must be > 0")
        return val
    parse.__name__ = kind.__name__
    return parse


def _out_dir(flag, path):
    if path and os.path.exists(path) and not os.path.isdir(path):
        raise UsageError(f"{flag} {path!r} is a file; give a directory (it is created if missing)")


def _device(flag, device):
    if device is None:
        return
    import torch
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise UsageError(f"{flag} {device!r} is not a device; use cpu or cuda[:N]") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"{flag} {device!r}: no CUDA device is visible here; use --device cpu")
    if dev.type not in ("cpu", "cuda"):
        raise UsageError(f"{flag} {device!r}: mindcore runs on cpu or cuda; use one of those")


def _preflight(tr, cfg):
    """Every training record through the batcher once before step 1: a row over max_len or an answer
    that tokenizes differently across paths is a one-line error now, not a crash at step N."""
    from .mind.data import DataError
    golden = cfg.golden if cfg.mode == "single" else None
    for i in range(0, len(tr.records), 256):
        try:
            tr.batch_fn(tr.records[i:i + 256], golden)
        except ValueError as e:
            raise DataError(cfg.train_file or "built-in data", "<record>", str(e)) from None


def _demo(args):
    _out_dir("--out", args.out)
    from .mind.demo import parse_modes, run_demo
    run_demo(args.out, modes=parse_modes(args.modes), budget_s=args.budget_s, steps=args.steps,
             threads=args.threads, seeds=args.seeds)
    return 0


def _train(args):
    from .mind import distributed as D
    from .mind.config import load_config
    from .mind.student import save_student
    from .mind.trainer import Trainer
    _device("--device", args.device)
    cfg = load_config(args.config, mode=args.mode, steps=args.steps, out_dir=args.out, device=args.device,
                      fsdp=args.fsdp)
    if not cfg.out_dir:
        raise UsageError("give --out DIR (or out_dir in the config) for checkpoints and metrics")
    _out_dir("--out", cfg.out_dir)
    if cfg.extra.get("study") and args.mode is None:   # a study preset: every mode, seed and protocol
        from .mind.study import run_from_config
        run_from_config(cfg, cfg.out_dir)
        return 0
    info = D.init_from_env(cfg.device)
    if info.enabled and cfg.device.startswith("cuda"):
        cfg.device = f"cuda:{info.local_rank}"
    tr = Trainer.from_config(cfg)
    _preflight(tr, cfg)
    summary = tr.train(out_dir=cfg.out_dir, resume=args.resume)
    student = tr.export_model()   # every rank: under FSDP this gathers the shards to rank 0
    result = dict(summary)
    if not args.no_eval:          # every rank calls; rank 0 evaluates
        for split in ("id", "ood"):
            result[f"{split}_accuracy"] = tr.evaluate(tr.eval_splits[split])["accuracy"]
    if info.is_main:
        save_student(student, tr.tokenizer, os.path.join(cfg.out_dir, "student"))
        with open(os.path.join(cfg.out_dir, "config.json"), "w") as f:
            json.dump(cfg.to_dict(), f, indent=2)
        with open(os.path.join(cfg.out_dir, "result.json"), "w") as f:
            json.dump(result, f, indent=2)
        print(json.dumps(result))
    return 0


def _eval(args):
    from .mind import evaluate
    from .mind.config import ConfigError, TrainConfig
    from .mind.student import build_student
    from .mind.trainer import load_splits
    _device("--device", args.device)
    cfg_path = os.path.join(args.run, "config.json")
    if not os.path.isfile(cfg_path):
        raise UsageError(f"--run {args.run!r} holds no config.json; pass the --out DIR of a finished `mindcore train`")
    try:
        with open(cfg_path, encoding="utf-8") as f:
            raw = json.load(f)
        if not isinstance(raw, dict):
            raise ConfigError(f"must hold a JSON object, got {type(raw).__name__}")
        cfg = TrainConfig.from_dict(raw).validate()
    except json.JSONDecodeError as e:
        raise ConfigError(f"{cfg_path}:{e.lineno}: not valid JSON ({e.msg}); re-run `mindcore train` "
                          f"or fix the file") from None
    except (ConfigError, UnicodeDecodeError) as e:
        raise ConfigError(f"{cfg_path}: {e}") from None
    from .mind.data import PERSPECTIVES
    splits = load_splits(cfg, list(cfg.perspectives or PERSPECTIVES))
    student_dir = os.path.join(args.run, "student")
    try:
        model, tk = build_student(student_dir, device=args.device or cfg.device)
    except FileNotFoundError:
        raise
    except Exception as e:  # a damaged tokenizer.json / weights file: a file problem, not a crash
        from .mind.data import DataError
        raise DataError(student_dir, "<student>", f"cannot be loaded ({type(e).__name__}: {str(e)[:160]}); "
                        f"re-run `mindcore train` or pass the --out of a finished run") from e
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
    p = OneLineParser(prog="mindcore", description="MIND multi-perspective CoT distillation engine")
    p.add_argument("--debug", action="store_true", help="show the Python traceback of an error")
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("demo", help="compare modes under both protocols on built-in data, seeds, report (<10 min on 2 CPUs)")
    d.add_argument("--out", required=True, help="output directory (report.json, plots, metrics)")
    d.add_argument("--modes", default=None, help="comma-separated modes (default single,uniform,consistency,mind; "
                   "also mind-no-inertia, mind-no-synergy)")
    d.add_argument("--seeds", type=_positive(int), default=3, help="at most this many seeds (fewer if the budget runs out)")
    d.add_argument("--budget-s", type=_positive(float), default=540.0, help="total wall-clock budget, split across modes")
    d.add_argument("--steps", type=_positive(int), default=None, help="step budget per mode (default: the demo preset)")
    d.add_argument("--threads", type=_positive(int), default=None, help="torch CPU threads (default: all cores; use 1 on a shared machine)")
    t = sub.add_parser("train", help="train one mode from a YAML config (runs under torchrun too)")
    t.add_argument("--config", required=True)
    t.add_argument("--out", default=None)
    t.add_argument("--mode", default=None)
    t.add_argument("--steps", type=_positive(int), default=None)
    t.add_argument("--device", default=None)
    t.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt if present")
    t.add_argument("--fsdp", action="store_true", default=None,
                   help="under torchrun: shard the student with FSDP2 instead of DDP (config key fsdp)")
    t.add_argument("--no-eval", action="store_true")
    e = sub.add_parser("eval", help="accuracy of a trained run on its id and ood splits")
    e.add_argument("--run", required=True, help="the --out directory of `mindcore train`")
    e.add_argument("--max-n", type=_positive(int), default=None)
    e.add_argument("--device", default=None)
    sub.add_parser("synthesize", help="teacher records from a local HF model (see `mindcore synthesize -h`)",
                   add_help=False)
    i = sub.add_parser("info", help="build and provider report")
    for sp in (d, t, e, i):  # `mindcore train --debug` as well as `mindcore --debug train`
        sp.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return p


def _user_errors():
    import yaml
    from .mind.checkpoint import CheckpointError
    from .mind.config import ConfigError
    from .mind.data import DataError
    return (UsageError, ConfigError, DataError, CheckpointError, yaml.YAMLError, FileNotFoundError,
            NotADirectoryError, IsADirectoryError, PermissionError, FileExistsError)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = os.environ.get("MINDCORE_DEBUG", "") not in ("", "0")
    if argv and argv[0] == "synthesize":
        cmd, run = "synthesize", lambda: _synthesize(argv[1:])
        debug = debug or "--debug" in argv
        argv = [a for a in argv if a != "--debug"]
    else:
        args = build_parser().parse_args(argv)
        debug = debug or args.debug
        cmd, run = args.cmd, lambda: {"demo": _demo, "train": _train, "eval": _eval, "info": _info}[args.cmd](args)
    try:
        return run()
    except _user_errors() as exc:
        if debug:
            raise
        msg = " ".join(str(exc).split()) or type(exc).__name__  # one line, whatever the message held
        print(f"mindcore {cmd}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"mindcore {cmd}: interrupted", file=sys.stderr)
        return 130
