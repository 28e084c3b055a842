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
