"""Join two studies on the same data: `python -m mindcore.mind.study_merge MAIN SOLO OUT`.

MAIN holds the mode comparison (its `mind` runs give the TA's mean alpha, default target), SOLO the
solo students (and possibly an ablation's mind runs). Writes OUT/diagnosis.json (solo accuracy per
perspective beside alpha, Spearman), OUT/ood_variants.json (accuracy per OOD candidate and mode: the
numbers that choose the OOD split) and OUT/alpha_vs_solo.png.
"""
from __future__ import annotations

import json
import os
import sys

from .plots import plot_alpha_vs_solo
from .study import spearman


def _mean(xs):
    return sum(xs) / len(xs) if xs else None


def merge(main: dict, solo: dict) -> dict:
    d = dict(solo["ta_diagnosis"])
    persp = main["perspectives"]
    runs = [r for r in main["protocols"]["equal_questions"]["modes"].get("mind", {}).get("seeds", []) if r["mean_alpha"]]
    if runs:
        alpha = {n: _mean([r["mean_alpha"][n] for r in runs]) for n in persp}
        d["mean_alpha_mind"] = alpha
        d["ranking_by_alpha_mind"] = sorted(alpha, key=lambda n: -alpha[n])
        d["spearman_alpha_vs_solo_mind"] = spearman([alpha[n] for n in d["solo"]],
                                                    [d["solo"][n]["id_accuracy"] for n in d["solo"]])
        d["mind_seeds"] = len(runs)
    if "mean_alpha_mind" in solo.get("ta_diagnosis", {}):   # SOLO's own mind runs: the ablation target
        d["mean_alpha_ablation"] = solo["ta_diagnosis"]["mean_alpha_mind"]
        d["ablation_ta_target"] = solo["config"].get("ta_target")
        d["spearman_alpha_vs_solo_ablation"] = solo["ta_diagnosis"].get("spearman_alpha_vs_solo_mind")
    return d


def ood_variants(*reports) -> dict:
    out = {}
    for rep in reports:
        for p, block in rep["protocols"].items():
            for m, e in block["modes"].items():
                key = m if p == "equal_questions" else f"{m}@{p}"
                if rep.get("config", {}).get("ta_target", "ce") != "ce":
                    key += f" (ta_target={rep['config']['ta_target']})"
                vars_ = e["seeds"][0]["ood_by_variant"].keys()
                out[key] = {v: _mean([s["ood_by_variant"][v] for s in e["seeds"]]) for v in vars_}
                out[key]["id"] = e["id_accuracy"]
        for n, s in (rep.get("ta_diagnosis") or {}).get("solo", {}).items():
            out.setdefault(f"solo:{n}", {"id": s["id_accuracy"]})
    return out


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 3:
        raise SystemExit("usage: python -m mindcore.mind.study_merge MAIN_DIR SOLO_DIR OUT_DIR")
    main_rep, solo_rep = (json.load(open(os.path.join(d, "report.json"))) for d in argv[:2])
    os.makedirs(argv[2], exist_ok=True)
    diag = merge(main_rep, solo_rep)
    with open(os.path.join(argv[2], "diagnosis.json"), "w") as f:
        json.dump(diag, f, indent=2)
    with open(os.path.join(argv[2], "ood_variants.json"), "w") as f:
        json.dump(ood_variants(main_rep, solo_rep), f, indent=2)
    plot_alpha_vs_solo({"ta_diagnosis": diag}, os.path.join(argv[2], "alpha_vs_solo.png"))
    print(json.dumps(diag, indent=2))


if __name__ == "__main__":
    main()
