"""``RUN/curves.png``: training loss and validation error per epoch."""
from __future__ import annotations

from pathlib import Path


def plot_history(history: list[dict], path: Path) -> None:
    """Loss (log scale) and, when validated, the mean validation error, against the epoch."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4))
    ep = [h["epoch"] for h in history]
    ax.plot(ep, [h["loss"] for h in history], label="training loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    if history and "val_mean_error" in history[0]:
        ax2 = ax.twinx()
        ax2.plot(ep, [h["val_mean_error"] for h in history], color="C1", label="val mean error")
        ax2.set_ylabel("val mean error (box-normalised)")
        fig.legend(loc="upper center")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
