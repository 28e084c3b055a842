"""Evaluate a finished study's students on every built-in OOD candidate (the numbers that choose the OOD split).

  python -m benchmarks.eval_ood_candidates STUDY_DIR OUT.json [N_PER_VARIANT]

Rebuilds the study's data (same seed: train and id_eval are drawn before any OOD question, so they and the
tokenizer are unchanged), loads each run's final checkpoint and scores N questions of every candidate.
Floors: ``majority_train`` = always answering the training set's most frequent answer; ``majority_own`` =
the candidate's own most frequent answer (an upper bound on any constant answer).
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections import Counter


def main(argv):
    import torch
    from mindcore.mind import data, tokenizer as tok
    from mindcore.mind.config import TrainConfig
    from mindcore.mind.study import machine
    from mindcore.mind.teacher import OOD_CANDIDATES
    from mindcore.mind.trainer import Trainer, load_splits
    torch.set_num_threads(1)
    study, out = argv[0], argv[1]
    n = int(argv[2]) if len(argv) > 2 else 200
    rep = json.load(open(os.path.join(study, "report.json")))
    known = {f.name for f in dataclasses.fields(TrainConfig)}   # a report may name keys since removed
    base = dict({k: v for k, v in rep["config"].items() if k in known}, n_ood=n * len(OOD_CANDIDATES), ood_variants=list(OOD_CANDIDATES), eval_max_n=None)
    splits = load_splits(TrainConfig(**base), list(data.PERSPECTIVES))
    tk = tok.build_tokenizer(tok.training_texts(splits["train"]), vocab_size=base["vocab_size"])
    by_var = {v: [r for r in splits["ood_eval"] if r.extra["variant"] == v] for v in OOD_CANDIDATES}
    top = Counter(r.answer for r in splits["train"]).most_common(1)[0][0]
    res = {"study": study, "machine": machine(), "n_per_variant": n, "floors": {}, "runs": {}}
    for v, recs in by_var.items():
        own = Counter(r.answer for r in recs).most_common(1)[0][1] / len(recs)
        res["floors"][v] = {"majority_train": sum(r.answer == top for r in recs) / len(recs), "majority_own": own}
    for p, block in rep["protocols"].items():
        for mode, e in block["modes"].items():
            for s in e["seeds"]:
                key = f"seed{s['seed'] - rep['config']['seed']}/{e['run'].replace(':', '_')}"
                if key in res["runs"]:
                    continue
                cfg = TrainConfig(**dict(base, mode=mode, protocol=p, seed=s["seed"]))
                tr = Trainer.from_config(cfg, splits=splits, tokenizer=tk, log=lambda m: None)
                tr.load_checkpoint(os.path.join(study, key, "checkpoint.pt"))
                res["runs"][key] = {v: tr.evaluate(recs)["accuracy"] for v, recs in by_var.items()}
                print(key, res["runs"][key], flush=True)
    with open(out, "w") as f:
        json.dump(res, f, indent=2)


if __name__ == "__main__":
    main(sys.argv[1:])
