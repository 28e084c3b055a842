"""PNG plots from the metric rows (matplotlib Agg: no display needed)."""
from __future__ import annotations

import os


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _smooth(xs, k=10):
    out, acc = [], []
    for x in xs:
        acc.append(x)
        acc = acc[-k:]
        out.append(sum(acc) / len(acc))
    return out


def plot_alpha(rows, path, title="mean alpha per perspective"):
    """Mean selection weight of each perspective over training (the TA's curriculum)."""
    rows = [r for r in rows if r.get("phase") == "train"]
    if not rows:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    steps = [r["step"] for r in rows]
    for name in rows[0]["alpha"]:
        ax.plot(steps, _smooth([r["alpha"][name] for r in rows]), label=name)
    ax.set(xlabel="step", ylabel="mean alpha (smoothed)", title=title)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_losses(rows_by_mode, path):
    """Student SFT loss per mode (same step axis)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    for mode, rows in rows_by_mode.items():
        rows = [r for r in rows if r.get("phase") == "train"]
        ax.plot([r["step"] for r in rows], _smooth([r["sft"] for r in rows]), label=mode)
    ax.set(xlabel="step", ylabel="L_SFT (smoothed)", yscale="log", title="student loss by mode")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_accuracy(modes, path):
    """Bar chart of id / ood accuracy per mode; ``modes`` = report["modes"]."""
    plt = _plt()
    names = list(modes)
    fig, ax = plt.subplots(figsize=(max(4, 1.3 * len(names) + 2), 4))
    width = 0.38
    for i, split in enumerate(("id_accuracy", "ood_accuracy")):
        xs = [j + (i - 0.5) * width for j in range(len(names))]
        ax.bar(xs, [modes[n][split] for n in names], width, label=split.split("_")[0])
    ax.set_xticks(range(len(names)), names, rotation=15)
    ax.set(ylabel="accuracy", ylim=(0, 1), title="accuracy by mode")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_run(rows_by_mode, modes, out_dir):
    paths = [plot_losses(rows_by_mode, os.path.join(out_dir, "loss.png")),
             plot_accuracy(modes, os.path.join(out_dir, "accuracy.png"))]
    for mode, rows in rows_by_mode.items():
        if mode != "single":
            paths.append(plot_alpha(rows, os.path.join(out_dir, f"alpha_{mode}.png"), f"mean alpha: {mode}"))
    return [p for p in paths if p]


def plot_protocol_accuracy(report, path):
    """id / ood accuracy per mode, one panel per protocol; bars = mean over seeds, error bars = sd."""
    plt = _plt()
    blocks = report["protocols"]
    fig, axes = plt.subplots(1, len(blocks), figsize=(5.5 * len(blocks), 4), squeeze=False)
    for ax, (proto, block) in zip(axes[0], blocks.items()):
        names = list(block["modes"])
        width = 0.38
        for i, split in enumerate(("id", "ood")):
            xs = [j + (i - 0.5) * width for j in range(len(names))]
            means = [block["modes"][n][f"{split}_accuracy"] for n in names]
            sds = [block["modes"][n][f"{split}_sd"] or 0.0 for n in names]
            ax.bar(xs, means, width, yerr=sds, capsize=3, label=split)
        ax.set_xticks(range(len(names)), names, rotation=15)
        top = max([block["modes"][n][f"{s}_accuracy"] + (block["modes"][n][f"{s}_sd"] or 0)
                   for n in names for s in ("id", "ood")] + [0.05])
        ax.set(ylabel="accuracy", ylim=(0, min(1.0, 1.25 * top)),
               title=f"{proto} ({report['seeds_run']} seed(s), mean ± sd)")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_alpha_vs_solo(report, path, mode="mind"):
    """The TA's mean alpha per perspective (over training and seeds) against each perspective's solo accuracy."""
    d = report.get("ta_diagnosis") or {}
    alpha = d.get(f"mean_alpha_{mode}")
    if not alpha or not d.get("solo"):
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for name, s in d["solo"].items():
        ax.scatter(s["id_accuracy"], alpha[name])
        ax.annotate(name, (s["id_accuracy"], alpha[name]), fontsize=8, xytext=(3, 3), textcoords="offset points")
    ax.axhline(1 / len(alpha), ls="--", lw=0.8, color="grey")
    rho = d.get(f"spearman_alpha_vs_solo_{mode}")
    ax.set(xlabel="solo student id accuracy (one perspective alone)", ylabel=f"mean alpha ({mode})",
           title="TA weight vs what each perspective teaches" + (f" (Spearman {rho:+.2f})" if rho is not None else ""))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_study(report, histories, out_dir):
    """Every figure of a study: accuracy per protocol, loss curves, alpha over training, alpha vs solo."""
    paths = [plot_protocol_accuracy(report, os.path.join(out_dir, "accuracy.png")),
             plot_losses({k: v for k, v in histories.items() if not k.startswith("solo:")},
                         os.path.join(out_dir, "loss.png")),
             plot_alpha_vs_solo(report, os.path.join(out_dir, "alpha_vs_solo.png"))]
    for key, rows in histories.items():
        if key.startswith("mind"):
            paths.append(plot_alpha(rows, os.path.join(out_dir, f"alpha_{key}.png"), f"mean alpha: {key}"))
    return [p for p in paths if p]
