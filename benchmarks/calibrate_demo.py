"""Calibrate the demo's shared setting (the same for every mode): train `single` and `uniform` under
equal_questions at one setting and evaluate both on id_eval and every OOD candidate.

  python -m benchmarks.calibrate_demo OUT.jsonl KEY=VALUE ...   (e.g. max_terms=3 lr=0.01 steps=500)

One JSON line per (setting, mode) is appended to OUT.jsonl; the choice is made on these lines
(benchmarks/results/demo-calibration/).
"""
from __future__ import annotations

import json
import sys
import time

import torch


def main(argv):
    from mindcore.mind import data, tokenizer as tok
    from mindcore.mind.config import TrainConfig
    from mindcore.mind.demo import DEMO
    from mindcore.mind.study import machine
    from mindcore.mind.teacher import OOD_CANDIDATES
    from mindcore.mind.trainer import Trainer, load_splits
    torch.set_num_threads(1)
    out, setting = argv[0], dict(kv.split("=", 1) for kv in argv[1:])
    modes = setting.pop("modes", "single,uniform").split(",")
    curve = [int(x) for x in setting.pop("curve", "").split(",") if x]   # id accuracy at these steps too
    setting = {k: (float(v) if "." in v else int(v)) for k, v in setting.items()}
    base = dict(DEMO, n_ood=50 * len(OOD_CANDIDATES), eval_max_n=None, ood_variants=list(OOD_CANDIDATES),
                **setting)
    first = TrainConfig(**base)
    splits = load_splits(first, list(data.PERSPECTIVES))
    tk = tok.build_tokenizer(tok.training_texts(splits["train"]), vocab_size=first.vocab_size)
    answers = [r.answer for r in splits["train"]]
    top = max(set(answers), key=answers.count)
    floor = {"id": sum(r.answer == top for r in splits["id_eval"]) / len(splits["id_eval"])}
    for mode in modes:
        cfg = TrainConfig(**dict(base, mode=mode))
        tb = time.perf_counter()
        tr = Trainer.from_config(cfg, splits=splits, tokenizer=tk, log=lambda m: None)
        t0 = time.perf_counter()
        points = {}
        for stop in curve:
            tr.train(stop_at=stop)
            points[stop] = tr.evaluate(tr.eval_splits["id"])["accuracy"]
        tr.train()
        t1 = time.perf_counter()
        acc = {s: tr.evaluate(tr.eval_splits[s]) for s in ("id", "ood")}
        row = {"setting": setting, "mode": mode, "id_accuracy": acc["id"]["accuracy"],
               "ood_by_variant": acc["ood"]["by_variant"], "majority_answer_id": floor["id"],
               "final_loss": tr.history[-1]["sft"], "id_curve": points, "build_s": round(t0 - tb, 1), "train_s": round(t1 - t0, 1),
               "eval_s": round(time.perf_counter() - t1, 1), "machine": machine(), "threads": 1}
        print(json.dumps(row), flush=True)
        with open(out, "a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
