"""Join studies on the same data: `python -m mindcore.mind.study_merge MAIN SOLO OUT [ABLATION ...]`,
or `python -m mindcore.mind.study_merge --seeds OUT RUN [RUN ...]` for one config's seeds run apart
(study.join_seeds: one report.json, outcomes.json and plots, as if one study had run them all).

MAIN holds the mode comparison (its `mind` runs give the TA's mean alpha, default target), SOLO the
solo students (and possibly an ablation's mind runs), each ABLATION a study of `mind` under another
``ta_target``. Writes OUT/diagnosis.json (solo accuracy per perspective beside alpha, Spearman; each
ablation under ``ablations.<ta_target>``), OUT/ood_variants.json (accuracy per OOD candidate and mode)
and OUT/alpha_vs_solo.png.
"""
from __future__ import annotations

import json
import os
import sys

from .plots import plot_alpha_vs_solo
from .study import spearman


def _mean(xs):
    return sum(xs) / len(xs) if xs else None


def _mind(rep):
    return rep["protocols"].get("equal_questions", {}).get("modes", {}).get("mind")


def _alpha_entry(mind, persp, solo):
    runs = [r for r in mind["seeds"] if r["mean_alpha"]]
    alpha = {n: _mean([r["mean_alpha"][n] for r in runs]) for n in persp}
    return {"mean_alpha": alpha, "ranking_by_alpha": sorted(alpha, key=lambda n: -alpha[n]),
            "spearman_alpha_vs_solo": spearman([alpha[n] for n in solo], [solo[n]["id_accuracy"] for n in solo]),
            "id_accuracy": mind["id_accuracy"], "ood_accuracy": mind["ood_accuracy"], "seeds": len(runs)}


def merge(main: dict, solo: dict, *ablations: dict) -> dict:
    d = {k: solo["ta_diagnosis"][k] for k in ("solo", "ranking_by_solo_id")}
    persp = main["perspectives"]
    if _mind(main):   # the default target's alpha
        e = _alpha_entry(_mind(main), persp, d["solo"])
        d.update(mean_alpha_mind=e["mean_alpha"], ranking_by_alpha_mind=e["ranking_by_alpha"],
                 spearman_alpha_vs_solo_mind=e["spearman_alpha_vs_solo"], mind_seeds=e["seeds"])
    d["ablations"] = {}
    for rep in (solo,) + ablations:   # SOLO's own mind runs and every ABLATION: another TA target
        target = rep.get("config", {}).get("ta_target", "ce")
        if _mind(rep) and target != "ce":
            d["ablations"][target] = _alpha_entry(_mind(rep), persp, d["solo"])
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
    if argv[:1] == ["--seeds"]:
        if len(argv) < 3:
            raise SystemExit("usage: python -m mindcore.mind.study_merge --seeds OUT_DIR RUN_DIR [RUN_DIR ...]")
        from .study import format_table, join_seeds
        print(format_table(join_seeds(argv[1], argv[2:])))
        return
    if len(argv) < 3:
        raise SystemExit("usage: python -m mindcore.mind.study_merge MAIN_DIR SOLO_DIR OUT_DIR [ABLATION_DIR ...]")
    main_rep, solo_rep, *abl = (json.load(open(os.path.join(d, "report.json"))) for d in argv[:2] + argv[3:])
    os.makedirs(argv[2], exist_ok=True)
    diag = merge(main_rep, solo_rep, *abl)
    with open(os.path.join(argv[2], "diagnosis.json"), "w") as f:
        json.dump(diag, f, indent=2)
    with open(os.path.join(argv[2], "ood_variants.json"), "w") as f:
        json.dump(ood_variants(main_rep, solo_rep, *abl), f, indent=2)
    plot_alpha_vs_solo({"ta_diagnosis": diag}, os.path.join(argv[2], "alpha_vs_solo.png"))
    print(json.dumps(diag, indent=2))


if __name__ == "__main__":
    main()
