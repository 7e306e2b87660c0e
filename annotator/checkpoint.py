"""Checkpoint files, saved atomically: a training run's ``last.pt`` and the exported cascade.

Run checkpoint: ``{"config", "state_dict", "optimizer", "meta": {"fit", "history"}}``.
Cascade (the tool's weights): ``{"stages": [{"config", "state_dict"}, ...], "roll": {"config", "state_dict"},
"meta": {"flip", "stages", ...}}``; ``roll`` (the roll estimator in front of the stages) is optional.
"""
from __future__ import annotations

import io
import pickle
from pathlib import Path

import torch

from .formats import atomic_write
from .network import LandmarkNet, RollNet, network_for

DEFAULT_WEIGHTS = Path(__file__).parent / "weights" / "landmarks68.pt"


def save(path: str | Path, checkpoint: dict) -> None:
    """``torch.save`` to ``path`` through a temporary file: a reader never sees a partial file."""
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    atomic_write(Path(path), buffer.getvalue())


def load(path: str | Path) -> dict:
    """A checkpoint's tensors and metadata, on the CPU (plain data only: ``weights_only``)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as e:  # torch's own messages run to a page
        reason = str(e).split(". ")[0].splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(f"not a checkpoint torch can read ({reason})") from None


def save_run(path: str | Path, net: LandmarkNet, optimizer: torch.optim.Optimizer, meta: dict) -> None:
    """A training run's resumable state."""
    save(path, {"config": net.config, "state_dict": net.state_dict(), "optimizer": optimizer.state_dict(),
                "meta": meta})


def load_run(path: str | Path) -> dict:
    """A run's checkpoint from its folder (``last.pt`` in it) or the file itself."""
    path = Path(path)
    return load(path / "last.pt" if path.is_dir() else path)


def save_cascade(path: str | Path, stages: list[dict], meta: dict, roll: dict | None = None) -> None:
    """The tool's weights: each stage's ``config`` and ``state_dict`` (and the roll estimator's), and metadata."""
    save(path, {"stages": stages, "meta": meta} | ({"roll": roll} if roll else {}))


def load_cascade(path: str | Path = DEFAULT_WEIGHTS) -> tuple[list[LandmarkNet], dict, RollNet | None]:
    """The cascade's networks (training mode, as built), its metadata and its roll estimator (None: none)."""
    ckpt = load(path)
    if "stages" not in ckpt:
        raise ValueError("a training run's checkpoint, not exported weights (make them with: annotate train export)"
                         if "state_dict" in ckpt else "not annotate's weights (no landmark stages in it)")
    stages = [_network(stage) for stage in ckpt["stages"]]
    return stages, ckpt.get("meta", {}), _network(ckpt["roll"]) if "roll" in ckpt else None


def _network(stage: dict):
    net = network_for(stage["config"])
    net.load_state_dict(stage["state_dict"])
    return net
