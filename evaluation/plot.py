"""The moderation threshold sweep as a PNG: one precision-recall curve per category."""

from __future__ import annotations

from pathlib import Path


def plot_sweep(sweep: dict[str, list[dict]], path: str | Path, title: str = "moderation: precision vs recall") -> Path:
    import matplotlib

    matplotlib.use("Agg")  # files only, never a display
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5), dpi=100)
    try:
        for name, points in sweep.items():
            pts = [
                (p["recall"], p["precision"]) for p in points if p["recall"] is not None and p["precision"] is not None
            ]
            if pts:
                xs, ys = zip(*pts)
                ax.plot(xs, ys, marker=".", linewidth=2.5 if name == "overall" else 1.2, label=name)
        ax.set(xlabel="recall", ylabel="precision", xlim=(-0.02, 1.02), ylim=(-0.02, 1.02), title=title)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7, loc="lower left")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path
