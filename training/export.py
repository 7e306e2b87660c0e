"""``annotate train export``: training runs' weights as one cascade file (the tool's default network)."""
from __future__ import annotations

from pathlib import Path

from annotator.checkpoint import DEFAULT_WEIGHTS, load_run, save_cascade


def source_weights() -> Path | None:
    """The packaged weights file when the tool runs from a source checkout (setup.cfg beside the package)."""
    return DEFAULT_WEIGHTS if (DEFAULT_WEIGHTS.parents[2] / "setup.cfg").is_file() else None


def export(runs: list[str | Path], dest: str | Path, flip: bool = True) -> Path:
    """Write the cascade of ``runs`` (first: box stage, then refinement stages) to ``dest``.

    Each stage keeps its config and normalisation; the metadata keeps every
    stage's exact training command, data and history. No optimizer state;
    weights are stored as float16.
    """
    stages, fits = [], []
    for run in runs:
        ckpt = load_run(run)
        stages.append({"config": ckpt["config"], "state_dict": _half(ckpt["state_dict"])})
        fits.append({"fit": ckpt["meta"]["fit"], "history": ckpt["meta"]["history"]})
    if stages[0]["config"].get("frame", "box") != "box":
        raise ValueError(f"{runs[0]}: the first stage must be a box-frame network")
    save_cascade(dest, stages, {"flip": flip, "stages": fits})
    return Path(dest)


def _half(state: dict) -> dict:
    """Weight tensors as float16 (half the file; loading casts back), small buffers kept exact."""
    return {k: v.half() if v.is_floating_point() and v.numel() > 1000 else v for k, v in state.items()}
