"""``annotate train export``: training runs' weights as one cascade file (the tool's default network)."""
from __future__ import annotations

from pathlib import Path

from annotator.checkpoint import DEFAULT_WEIGHTS, load_run, save_cascade


def source_weights() -> Path | None:
    """The packaged weights file when the tool runs from a source checkout (setup.cfg beside the package)."""
    return DEFAULT_WEIGHTS if (DEFAULT_WEIGHTS.parents[2] / "setup.cfg").is_file() else None


def export(runs: list[str | Path], dest: str | Path, flip: bool = True, average: list[str | Path] = ()) -> Path:
    """Write the cascade of ``runs`` (a roll estimator, if any; the box stage, then refinement stages) to ``dest``.

    ``average``: runs trained as the last stage was (other seeds), or cascades whose last stage was; that
    stage becomes their average (``annotator.network.Averaged``).

    A run is a run folder or its ``last.pt``, or an exported cascade, whose stages (and roll estimator)
    are taken as they are. Each stage keeps its config and normalisation; the metadata keeps every
    stage's exact training command, data and history. No optimizer state; weights are stored as float16.
    """
    stages, fits, roll, roll_fit = [], [], None, None
    for run in runs:
        ckpt = load_run(run)
        if "stages" in ckpt:  # an exported cascade
            stages += ckpt["stages"]
            fits += ckpt["meta"]["stages"]
            if "roll" in ckpt:  # a cascade without one keeps the roll estimator (and its fit) given before it
                roll, roll_fit = ckpt["roll"], ckpt["meta"].get("roll")
            continue
        stage, fit = _stage(ckpt)
        if ckpt["config"].get("frame") == "roll":
            roll, roll_fit = stage, fit
        else:
            stages.append(stage)
            fits.append(fit)
    if average:
        stages[-1], fits[-1] = _averaged([(stages[-1], fits[-1])] + [_stage(run) for run in average])
    if stages[0]["config"].get("frame", "box") != "box":
        raise ValueError(f"{runs[0]}: the first landmark stage must be a box-frame network")
    meta = {"flip": flip, "stages": fits} | ({"roll": roll_fit} if roll else {})
    save_cascade(dest, stages, meta, roll)
    return Path(dest)


def _stage(run: str | Path | dict) -> tuple[dict, dict]:
    """A training run's stage (config, float16 weights) and its fit (settings and history); of an exported
    cascade, its last stage."""
    ckpt = run if isinstance(run, dict) else load_run(run)
    if "stages" in ckpt:
        return ckpt["stages"][-1], ckpt["meta"]["stages"][-1]
    return ({"config": ckpt["config"], "state_dict": half_precision(ckpt["state_dict"])},
            {"fit": ckpt["meta"]["fit"], "history": ckpt["meta"]["history"]})


def _averaged(members: list[tuple[dict, dict]]) -> tuple[dict, dict]:
    """One stage averaging the ``members``' (stage, fit) pairs; the fit is the first's, the others'
    under ``averaged_with``."""
    (first, fit), shape = members[0], members[0][0]["state_dict"]["mean_shape"]
    for stage, _ in members[1:]:
        if stage["config"] != first["config"] or not stage["state_dict"]["mean_shape"].equal(shape):
            raise ValueError("averaged runs must share the last stage's configuration and mean shape "
                             "(train them alike on the same data)")
    state = {f"members.{i}.{k}": v for i, (stage, _) in enumerate(members) for k, v in stage["state_dict"].items()}
    return ({"config": {**first["config"], "members": len(members)}, "state_dict": state},
            {**fit, "averaged_with": [f for _, f in members[1:]]})


def half_precision(state: dict) -> dict:
    """Weight tensors as float16 (half the file; loading casts back), small buffers kept exact."""
    return {k: v.half() if v.is_floating_point() and v.numel() > 1000 else v for k, v in state.items()}
