"""Multi-seed comparison of modes under both protocols (protocols.py), with paired statistics and
the Teaching Assistant diagnosis. `mindcore demo` and `mindcore train --config study*` run this.

Per seed, every distinct (mode, protocol) run trains once (multi-path modes are shared by both
protocols) and is evaluated on the same id / ood questions, so modes pair per question. Seeds vary
the student's init, the data order and the TA init; the data and the eval questions stay fixed.
Optional "solo" runs train one student per perspective alone (mode single, golden = that
perspective, equal questions) for the TA diagnosis. A wall-clock budget bounds the whole study: the
first seed's runs share it by their rows per step, and a further seed starts only if the previous
one's measured time still fits.
"""
from __future__ import annotations

import json
import os
import platform
import sys
import time

import torch

from . import protocols as P
from . import stats
from .config import TrainConfig

EVAL_RESERVE_S = 30.0     # per run, kept aside from the training budget for generation-based eval
COMPARE_TO = ("uniform", "consistency", "single")


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu}, {os.cpu_count()} cores, {gpu}"


def _plan(modes, protocols, solo, perspectives):
    runs = [dict(mode=m, protocol=p, key=P.run_key(m, p)) for m, p in P.distinct_runs(modes, protocols)]
    if solo:
        runs += [dict(mode="single", protocol="equal_questions", golden=name, key=f"solo:{name}")
                 for name in perspectives]
    return runs


def _weight(run, K):
    """Relative cost of a run, for sharing a budget: rows per micro-batch plus a per-step overhead
    (measured on the demo preset: a 2-row `single` step costs about a third of a 16-row one)."""
    rows = P.questions_per_micro(run["mode"], run["protocol"], 1, K) * P.rows_per_question(run["mode"], K)
    return rows + K / 2


def _alpha_mean(history):
    rows = [r for r in history if r.get("phase") == "train"]
    if not rows:
        return None
    return {k: sum(r["alpha"][k] for r in rows) / len(rows) for k in rows[0]["alpha"]}


def run_study(out_dir, base: dict, modes, protocols=P.PROTOCOLS, seeds=3, budget_s=None, solo=False,
              threads=None, log=None):
    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    t_start = time.perf_counter()
    if threads:
        torch.set_num_threads(threads)
    from . import data, tokenizer as tok
    from .plots import plot_study
    from .trainer import Trainer, load_splits

    protocols = [P.check(p) for p in protocols]
    persp = list(base.get("perspectives") or data.PERSPECTIVES)
    K = len(persp)
    runs = _plan(modes, protocols, solo, persp)
    cfgs = {r["key"]: TrainConfig(**dict(base, mode=r["mode"], protocol=r["protocol"],
                                         **({"golden": r["golden"]} if "golden" in r else {})))
            for r in runs}
    for c in cfgs.values():
        c.validate(data.PERSPECTIVES)   # every config checked before anything trains
    os.makedirs(out_dir, exist_ok=True)
    first = next(iter(cfgs.values()))
    splits = load_splits(first, persp)
    tk = None
    if first.student == "tiny-llama":
        tk = tok.build_tokenizer(tok.training_texts(splits["train"]), vocab_size=first.vocab_size)
    log(f"study: {len(splits['train'])} train questions x {K} perspectives, id {len(splits['id_eval'])}, "
        f"ood {len(splits['ood_eval'])}; {len(runs)} runs per seed, up to {seeds} seeds; machine: {machine()}")
    results = {r["key"]: [] for r in runs}     # per seed
    outcomes = {r["key"]: [] for r in runs}
    histories = {}
    seed_times, stop_reason = [], "all requested seeds ran"
    for s in range(seeds):
        elapsed = time.perf_counter() - t_start
        if budget_s is not None and s > 0 and elapsed + 1.05 * max(seed_times) > budget_s:
            stop_reason = (f"wall-clock budget: seed {s} would need ~{max(seed_times):.0f} s, "
                           f"{budget_s - elapsed:.0f} s left")
            break
        t_seed = time.perf_counter()
        for i, run in enumerate(runs):
            cfg = TrainConfig(**dict(cfgs[run["key"]].to_dict(), seed=first.seed + s))
            if budget_s is not None:
                left = budget_s - (time.perf_counter() - t_start)
                todo = runs[i:]
                share = _weight(run, K) / sum(_weight(r, K) for r in todo)
                cfg.max_wall_s = max(10.0, (left - EVAL_RESERVE_S * len(todo)) * share)
            tr = Trainer.from_config(cfg, log=log, splits=splits, tokenizer=tk)
            summary = tr.train(out_dir=os.path.join(out_dir, f"seed{s}", run["key"].replace(":", "_")))
            t_eval = time.perf_counter()
            acc = {split: tr.evaluate(tr.eval_splits[split]) for split in ("id", "ood")}
            res = {"seed": cfg.seed, "id_accuracy": acc["id"]["accuracy"], "ood_accuracy": acc["ood"]["accuracy"],
                   "ood_by_variant": acc["ood"]["by_variant"], "steps": summary["steps"],
                   "tokens": summary["tokens"], "questions_seen": tr.questions_seen,
                   "train_wall_s": round(summary["wall_s"], 1), "eval_wall_s": round(time.perf_counter() - t_eval, 1),
                   "stopped_by_wall_guard": summary["stopped_early"], "mean_alpha": _alpha_mean(tr.history)}
            results[run["key"]].append(res)
            outcomes[run["key"]].append({"id": acc["id"]["outcomes"], "ood": acc["ood"]["outcomes"]})
            if s == 0:
                histories[run["key"]] = tr.history
            log(f"== seed {cfg.seed} {run['key']}: id {res['id_accuracy']:.3f} ood {res['ood_accuracy']:.3f} "
                f"({res['steps']} steps, {res['tokens']} tokens, {res['train_wall_s']:.0f} s"
                f"{', wall guard hit' if res['stopped_by_wall_guard'] else ''})")
        seed_times.append(time.perf_counter() - t_seed)
    n_seeds = len(seed_times)
    report = summarise(results, outcomes, modes, protocols, persp, solo)
    report.update(seeds_run=n_seeds, seeds_requested=seeds, seed_stop_reason=stop_reason,
                  seed_wall_s=[round(t, 1) for t in seed_times], budget_s=budget_s, machine=machine(),
                  threads=torch.get_num_threads(), perspectives=persp, golden=first.golden,
                  config={k: v for k, v in first.to_dict().items() if k not in ("mode", "max_wall_s", "protocol")},
                  data={"train": len(splits["train"]), "id_eval": len(splits["id_eval"]),
                        "ood_eval": len(splits["ood_eval"])})
    report["plots"] = [os.path.basename(p) for p in plot_study(report, histories, out_dir)]
    report["wall_s"] = round(time.perf_counter() - t_start, 1)
    with open(os.path.join(out_dir, "report.json"), "w") as f:
        json.dump(report, f, indent=2)
    with open(os.path.join(out_dir, "outcomes.json"), "w") as f:
        json.dump(outcomes, f)
    print(format_table(report))
    return report


def _mode_entry(per_seed):
    ids = [r["id_accuracy"] for r in per_seed]
    oods = [r["ood_accuracy"] for r in per_seed]
    mean = lambda k: sum(r[k] for r in per_seed) / len(per_seed)  # noqa: E731
    return {"id_accuracy": stats.mean_sd(ids)["mean"], "ood_accuracy": stats.mean_sd(oods)["mean"],
            "id_sd": stats.mean_sd(ids)["sd"], "ood_sd": stats.mean_sd(oods)["sd"],
            "tokens": round(mean("tokens")), "questions_seen": round(mean("questions_seen")),
            "steps": round(mean("steps")), "train_wall_s": round(mean("train_wall_s"), 1),
            "stopped_by_wall_guard": any(r["stopped_by_wall_guard"] for r in per_seed), "seeds": per_seed}


def summarise(results, outcomes, modes, protocols, perspectives, solo):
    out = {"default_protocol": P.DEFAULT if P.DEFAULT in protocols else protocols[0], "protocols": {}}
    for p in protocols:
        block = {"description": P.DESCRIPTION[p], "modes": {}, "comparisons": {}}
        for m in modes:
            key = P.run_key(m, p)
            if results[key]:
                block["modes"][m] = dict(_mode_entry(results[key]), run=key)
        if "mind" in modes:
            for other in COMPARE_TO:
                if other in modes and outcomes[P.run_key(other, p)]:
                    a, b = outcomes[P.run_key("mind", p)], outcomes[P.run_key(other, p)]
                    block["comparisons"][f"mind_vs_{other}"] = {
                        split: stats.compare([o[split] for o in a], [o[split] for o in b]) for split in ("id", "ood")}
        out["protocols"][p] = block
    out["modes"] = out["protocols"][out["default_protocol"]]["modes"]
    if solo:
        out["ta_diagnosis"] = diagnose(results, perspectives)
        out["solo_runs"] = {k: v for k, v in results.items() if k.startswith("solo:")}   # per seed, for join_seeds
    return out


def _read_metrics(path):
    with open(path) as f:
        return [json.loads(ln) for ln in f if ln.strip()]


def join_seeds(out_dir, run_dirs):
    """One report from studies of the same config and data that ran different seeds (e.g. in parallel
    processes): per-seed results and per-question outcomes are concatenated and summarised again."""
    reps = [json.load(open(os.path.join(d, "report.json"))) for d in run_dirs]
    outs = [json.load(open(os.path.join(d, "outcomes.json"))) for d in run_dirs]
    same = lambda r: ({k: v for k, v in r["config"].items() if k != "seed"}, r["data"], r["perspectives"],  # noqa: E731
                      list(r["protocols"]), list(r["modes"]), sorted(r.get("solo_runs", {})))
    for d, r in zip(run_dirs[1:], reps[1:]):
        if same(r) != same(reps[0]):
            raise ValueError(f"run_dirs: {d} is not the same study as {run_dirs[0]} (config, data, modes or "
                             f"protocols differ); join only seeds of one config")
    results, outcomes, seen = {}, {}, set()
    for d, r, o in zip(run_dirs, reps, outs):
        per_key = {e["run"]: e["seeds"] for b in r["protocols"].values() for e in b["modes"].values()}
        per_key.update(r.get("solo_runs", {}))
        for key, rows in per_key.items():
            for row in rows:
                if (key, row["seed"]) in seen:
                    raise ValueError(f"run_dirs: seed {row['seed']} of {key} is in two studies ({d}); "
                                     f"join studies that ran different seeds")
                seen.add((key, row["seed"]))
            results.setdefault(key, []).extend(rows)
            outcomes.setdefault(key, []).extend(o[key])
    protocols, modes = list(reps[0]["protocols"]), list(reps[0]["modes"])
    report = summarise(results, outcomes, modes, protocols, reps[0]["perspectives"], bool(reps[0].get("solo_runs")))
    machines = sorted({r["machine"] for r in reps})
    report.update(seeds_run=sum(r["seeds_run"] for r in reps), seeds_requested=sum(r["seeds_requested"] for r in reps),
                  seed_stop_reason=f"joined from {len(reps)} studies: " + "; ".join(r["seed_stop_reason"] for r in reps),
                  seed_wall_s=[t for r in reps for t in r["seed_wall_s"]], budget_s=reps[0]["budget_s"],
                  machine=machines[0] if len(machines) == 1 else machines, threads=reps[0]["threads"],
                  perspectives=reps[0]["perspectives"], golden=reps[0]["golden"], config=reps[0]["config"],
                  data=reps[0]["data"], joined_from=[os.path.abspath(d) for d in run_dirs])
    from .plots import plot_study
    first = os.path.join(run_dirs[0], "seed0")   # loss and alpha curves: the first study's first seed
    histories = {k: _read_metrics(os.path.join(first, k.replace(":", "_"), "metrics.jsonl")) for k in results
                 if os.path.exists(os.path.join(first, k.replace(":", "_"), "metrics.jsonl"))}
    os.makedirs(out_dir, exist_ok=True)
    report["plots"] = [os.path.basename(p) for p in plot_study(report, histories, out_dir)]
    report["study_wall_s"] = [r["wall_s"] for r in reps]
    report["wall_s"] = round(sum(report["study_wall_s"]), 1)
    with open(os.path.join(out_dir, "report.json"), "w") as f:
        json.dump(report, f, indent=2)
    with open(os.path.join(out_dir, "outcomes.json"), "w") as f:
        json.dump(outcomes, f)
    return report


def diagnose(results, perspectives):
    """Solo accuracy per perspective beside the TA's mean alpha (mode mind, over training and seeds)."""
    solo = {n: _mode_entry(results[f"solo:{n}"]) for n in perspectives if results.get(f"solo:{n}")}
    out = {"solo": {n: {k: e[k] for k in ("id_accuracy", "id_sd", "ood_accuracy", "ood_sd")} for n, e in solo.items()},
           "ranking_by_solo_id": sorted(solo, key=lambda n: -solo[n]["id_accuracy"])}
    for mode in ("mind", "mind-no-inertia", "mind-no-synergy"):
        runs = [r for r in results.get(mode, []) if r["mean_alpha"]]
        if not runs:
            continue
        alpha = {n: sum(r["mean_alpha"][n] for r in runs) / len(runs) for n in perspectives}
        out[f"mean_alpha_{mode}"] = alpha
        out[f"ranking_by_alpha_{mode}"] = sorted(alpha, key=lambda n: -alpha[n])
        common = [n for n in solo if n in alpha]
        if len(common) >= 3:
            out[f"spearman_alpha_vs_solo_{mode}"] = spearman([alpha[n] for n in common],
                                                             [solo[n]["id_accuracy"] for n in common])
    return out


def spearman(x, y):
    def ranks(v):
        order = sorted(range(len(v)), key=lambda i: v[i])
        r = [0.0] * len(v)
        i = 0
        while i < len(v):          # average ranks over ties
            j = i
            while j + 1 < len(v) and v[order[j + 1]] == v[order[i]]:
                j += 1
            for k in range(i, j + 1):
                r[order[k]] = (i + j) / 2
            i = j + 1
        return r
    rx, ry = ranks(x), ranks(y)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    num = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    den = (sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry)) ** 0.5
    return num / den if den else None


def _pm(mean, sd):
    return f"{mean:.3f}" + (f"±{sd:.3f}" if sd is not None else "      ")


def format_table(report):
    lines = [f"{report['seeds_run']} seed(s) ({report['seed_stop_reason']}); machine: {report['machine']}"]
    for p, block in report["protocols"].items():
        tag = " (default, the paper's)" if p == report["default_protocol"] else ""
        lines += ["", f"protocol {p}{tag}: {block['description']}",
                  f"{'mode':<18}{'id acc':>14}{'ood acc':>14}{'questions':>10}{'tokens':>11}{'train s':>9}{'guard':>7}"]
        for m, r in block["modes"].items():
            lines.append(f"{m:<18}{_pm(r['id_accuracy'], r['id_sd']):>14}{_pm(r['ood_accuracy'], r['ood_sd']):>14}"
                         f"{r['questions_seen']:>10}{r['tokens']:>11}{r['train_wall_s']:>9.0f}"
                         f"{'hit' if r['stopped_by_wall_guard'] else '-':>7}")
        for name, c in block["comparisons"].items():
            parts = [f"{s} {c[s]['diff']:+.3f} [{c[s]['ci_low']:+.3f}, {c[s]['ci_high']:+.3f}] "
                     f"McNemar p={c[s]['mcnemar']['p_value']:.3g}" for s in ("id", "ood")]
            lines.append(f"  {name}: " + "; ".join(parts))
    d = report.get("ta_diagnosis")
    if d:
        lines += ["", "TA diagnosis: solo id accuracy per perspective vs the TA's mean alpha (mind)",
                  f"{'perspective':<18}{'solo id':>9}{'solo ood':>9}{'alpha':>8}"]
        alpha = d.get("mean_alpha_mind", {})
        for n in d["ranking_by_solo_id"]:
            a = alpha.get(n)
            lines.append(f"{n:<18}{d['solo'][n]['id_accuracy']:>9.3f}{d['solo'][n]['ood_accuracy']:>9.3f}"
                         f"{(f'{a:.3f}' if a is not None else '-'):>8}")
        if d.get("spearman_alpha_vs_solo_mind") is not None:
            lines.append(f"Spearman(alpha, solo id) = {d['spearman_alpha_vs_solo_mind']:+.2f}")
    if report.get("study_wall_s"):
        lines.append("wall time of the joined studies: " + ", ".join(f"{s:.0f} s" for s in report["study_wall_s"]))
    else:
        lines.append(f"total wall time {report['wall_s']:.0f} s")
    return "\n".join(lines)


def run_from_config(cfg: TrainConfig, out_dir):
    """`mindcore train --config study*`: the config's ``extra.study`` says modes, protocols, seeds, solo."""
    spec = dict(cfg.extra.get("study") or {})
    base = {k: v for k, v in cfg.to_dict().items() if k not in ("mode", "protocol", "extra", "out_dir")}
    return run_study(out_dir, base, modes=spec.get("modes", ["single", "uniform", "consistency", "mind"]),
                     protocols=spec.get("protocols", list(P.PROTOCOLS)), seeds=int(spec.get("seeds", 3)),
                     budget_s=spec.get("budget_s"), solo=bool(spec.get("solo", False)))
