"""``annotate train fit``: deterministic training of the landmark network (the loop, resume, validation).

Data and batches: ``data.py``; loss and learning-rate schedule: ``objective.py``; the checkpoint
layout: ``annotator/checkpoint.py``; the plot: ``curves.py``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from annotator.checkpoint import load_run, save_run
from annotator.crop import apply_affine, box_affine, invert_affine, to_crop_pixels
from annotator.network import GridNet, LandmarkNet, RollNet, is_grid, roll_of

from .augment import JITTER
from .curves import plot_history
from .data import base_affines, batches, merge_caches
from .face_resnet import PRETRAINED, load_face_trunk
from .metrics import normalised_errors
from .objective import grid_loss, loss_fn, lr_at


def mean_shape(targets: np.ndarray, frame: str, extent: float = 0.8) -> np.ndarray:
    """The mean box-relative shape; for the shape frame centred and scaled to ``extent`` of the crop."""
    mean = targets.mean(0)
    if frame != "shape":
        return mean
    lo, hi = mean.min(0), mean.max(0)
    return 0.5 + (mean - (lo + hi) / 2) * extent / (hi - lo).max()


def new_network(data: dict, arch: str, width: int, frame: str, heads: int,
                pretrained: bool = False) -> LandmarkNet | RollNet | GridNet:
    """A network whose input normalisation and mean shape come from the training ``data``
    (``frame`` roll: the roll estimator, whose angles are those of ``mean_shape``; ``arch`` grid or gridface:
    the precision stage). ``pretrained`` (gridface): its backbone's trunk starts as dlib's face ResNet
    (:func:`load_face_trunk`, adapted to this input normalisation)."""
    if frame == "roll":
        net = RollNet(arch, data["size"], width)
    elif is_grid(arch):
        net = GridNet(arch, data["size"], width, frame=frame, heads=heads)
    else:
        net = LandmarkNet(arch, data["size"], width, frame=frame, heads=heads)
    mean, std = channel_stats(data["crops"])
    net.mean.copy_(torch.tensor(mean).view(1, 3, 1, 1))
    net.std.copy_(torch.tensor(std).view(1, 3, 1, 1))
    net.mean_shape.copy_(torch.tensor(mean_shape(data["targets"], frame)))
    if pretrained:
        load_face_trunk(net.features, net.mean, net.std)
    return net


def channel_stats(crops: np.ndarray, chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation of (N, H, W, 3) uint8 crops, in float64, a chunk at a time
    (a float64 copy of all 128-px crops would take 10 GB)."""
    total, squares = np.zeros(3), np.zeros(3)
    for i in range(0, len(crops), chunk):
        x = crops[i:i + chunk].astype(np.float64)
        total += x.sum((0, 1, 2))
        squares += (x * x).sum((0, 1, 2))
    n = crops.size / 3
    mean = total / n
    return mean, np.sqrt(squares / n - mean * mean)


def _template(net: LandmarkNet) -> np.ndarray:
    return net.mean_shape.numpy().astype(np.float64)


def predict_cache(net: LandmarkNet, data: dict, batch: int = 256) -> np.ndarray:
    """Image-coordinate predictions on un-augmented crops of a cache.

    A shape-frame network is aligned on the ground truth here (no first
    stage), so its validation error is optimistic; ``evaluate`` runs the cascade.
    """
    net.eval()
    size = data["size"]
    bases = base_affines(data, net.config["frame"], _template(net))
    with torch.inference_mode():
        rel = np.concatenate([net(x)[..., :2].numpy() for x, _, _ in batches(data, bases, batch, None)])
    out = []
    for r, base, box in zip(rel.astype(np.float64), bases, data["boxes"]):
        in_context = apply_affine(invert_affine(base), to_crop_pixels(r, size))
        out.append(apply_affine(invert_affine(box_affine(tuple(box), size, data["context"])), in_context))
    return np.stack(out)


def deterministic() -> None:
    """Deterministic kernels only; without filling new tensors with NaN first (what correct kernels never
    read: a quarter of a training step's time on CPU, and no change to the results)."""
    torch.use_deterministic_algorithms(True)
    torch.utils.deterministic.fill_uninitialized_memory = False


def fit(train: list[str], out: str | Path, *, val: list[str] | None = None, arch: str = "cnn8",
        width: int = 32, epochs: int = 60, batch: int = 64, lr: float = 2e-3, weight_decay: float = 1e-4,
        loss: str = "mse", seed: int = 0, threads: int = 2, augment: bool = True, frame: str = "box",
        other: list[str] = (), occlude: float = 0.0, init: str | None = None, backbone_lr_scale: float = 1.0,
        lowres: float = 0.0, stretch: float = 0.0, command: str = "") -> dict:
    """Train on caches ``train``; writes RUN/last.pt (resumable), history.json and curves.png.

    ``init``: start from the network of this run (its folder or last.pt; same arch and width) with a new
    optimizer and schedule, a warm restart that carries a finished run further. Without it a ``gridface``
    network starts from dlib's face ResNet (recorded as the fit's ``pretrained``).
    ``backbone_lr_scale``: a grid stage's backbone (all but its fuse layers) learns at this times ``lr``.
    """
    torch.manual_seed(seed)
    deterministic()
    torch.set_num_threads(threads)
    if (arch == "heatmap" or is_grid(arch)) and frame != "shape":
        raise ValueError(f"the {arch} network places points inside its crop only: use it with --frame shape")
    if backbone_lr_scale <= 0 or backbone_lr_scale != 1 and not is_grid(arch):
        raise ValueError("--backbone-lr-scale: a positive factor, for the grid networks' backbones only")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = merge_caches(train, other)
    val_data = merge_caches(val) if val else None
    pretrained = arch == "gridface" and not init
    net = new_network(data, arch, width, frame, heads=2 if other else 1, pretrained=pretrained)
    if init:
        net.load_state_dict(load_run(init)["state_dict"])
    opt = torch.optim.AdamW(param_groups(net, backbone_lr_scale), lr=lr, weight_decay=weight_decay)
    config = {"train": [str(p) for p in train], "val": [str(p) for p in val or []], "arch": arch,
              "width": width, "epochs": epochs, "batch": batch, "lr": lr, "weight_decay": weight_decay,
              "loss": loss, "seed": seed, "threads": threads, "augment": augment, "size": data["size"],
              "frame": frame, "command": command}
    for key, value in (("occlude", occlude), ("lowres", lowres), ("stretch", stretch),
                       ("other", [str(p) for p in other]), ("init", str(init or "")),
                       ("pretrained", PRETRAINED if pretrained else ""),
                       ("backbone_lr_scale", backbone_lr_scale != 1 and backbone_lr_scale)):
        if value:  # recorded only when used, so earlier runs' settings still match on resume
            config[key] = value
    history = _resume(out / "last.pt", net, opt, config)
    bases = base_affines(data, frame, _template(net))
    for epoch in range(len(history), epochs):
        row = {"epoch": epoch + 1, "loss": train_epoch(net, opt, data, bases, epoch, config)}
        if val_data is not None and frame == "roll":
            row.update(roll_errors(net, val_data))
        elif val_data is not None:
            row["val_mean_error"] = float(normalised_errors(predict_cache(net, val_data), val_data["points"]).mean())
        history.append(row)
        tqdm.write(json.dumps(row))
        save_run(out / "last.pt", net, opt, {"fit": config, "history": history})
    (out / "history.json").write_text(json.dumps(history, indent=1))
    plot_history(history, out / "curves.png")
    return history[-1] if history else {}


def param_groups(net: torch.nn.Module, backbone_lr_scale: float) -> list[dict]:
    """The optimizer's parameter groups: one, or with ``backbone_lr_scale`` other than 1 a grid network's
    backbone (``down8`` and ``down16``: for gridface, dlib's levels) in a group of its own, whose learning
    rate :func:`train_epoch` scales by it (``lr_scale``)."""
    if backbone_lr_scale == 1:
        return [{"params": list(net.parameters())}]
    trunk = [*net.features.down8.parameters(), *net.features.down16.parameters()]
    ids = {id(p) for p in trunk}
    return [{"params": trunk, "lr_scale": backbone_lr_scale},
            {"params": [p for p in net.parameters() if id(p) not in ids]}]


def roll_errors(net: RollNet, data: dict, seed: int = 12345) -> dict:
    """The roll estimator on a cache's faces, each turned by a random angle (fixed ``seed``): the mean and
    95th percentile of its error in degrees, and the share of faces it misses by over 30 degrees."""
    net.eval()
    template = net.mean_shape
    bases = base_affines(data, "roll", _template(net))
    off = []
    with torch.inference_mode():
        for x, y, _ in batches(data, bases, 32, np.random.default_rng(seed), JITTER["roll"]):
            truth, pred = roll_of(y, template), torch.nn.functional.normalize(net(x), dim=1)
            off.append(torch.rad2deg(torch.acos((truth * pred).sum(1).clamp(-1, 1))).numpy())
    off = np.concatenate(off)
    return {"val_roll_mean_deg": float(off.mean()), "val_roll_p95_deg": float(np.percentile(off, 95)),
            "val_roll_over_30": float((off > 30).mean())}


def _resume(last: Path, net: LandmarkNet, opt: torch.optim.Optimizer, config: dict) -> list[dict]:
    """The history so far, with network and optimizer restored from ``last`` when it exists."""
    if not last.exists():
        return []
    state = load_run(last)
    if state["meta"]["fit"] != config | {"command": state["meta"]["fit"]["command"]}:
        raise ValueError(f"{last} was trained with other settings; use a new RUN folder")
    net.load_state_dict(state["state_dict"])
    opt.load_state_dict(state["optimizer"])
    return state["meta"]["history"]


def train_epoch(net: LandmarkNet, opt: torch.optim.Optimizer, data: dict, bases: np.ndarray, epoch: int,
                config: dict, penalty: Callable[[], torch.Tensor] | None = None) -> float:
    """One pass over ``data`` with the options of ``config`` (as recorded in the run); the mean point loss.

    ``penalty`` (e.g. adapt's pull towards the starting weights) is added to each step's loss.
    """
    batch, epochs, peak = config["batch"], config["epochs"], config["lr"]
    steps_per_epoch = len(data["crops"]) // batch
    total, warmup = epochs * steps_per_epoch, max(1, steps_per_epoch * epochs // 30)
    rng = np.random.default_rng([config["seed"], epoch])
    heads = net.config.get("heads", 1)
    net.train()
    losses = []
    samples = batches(data, bases, batch, rng if config["augment"] else None, JITTER[config["frame"]],
                      config.get("occlude", 0.0), config.get("lowres", 0.0), config.get("stretch", 0.0))
    bar = tqdm(samples, total=steps_per_epoch, desc=f"epoch {epoch + 1}/{epochs}", leave=False)
    for i, (x, y, head) in enumerate(bar):
        for g in opt.param_groups:
            g["lr"] = lr_at(epoch * steps_per_epoch + i, total, peak, warmup) * g.get("lr_scale", 1.0)
        if config["frame"] == "roll":  # squared distance between predicted and true (cos, sin)
            value = (net(x) - roll_of(y, net.mean_shape)).pow(2).sum(1).mean()
        elif is_grid(net.config["arch"]):  # an averaged stage (adapt) trains each member on the loss
            members = getattr(net, "members", [net])
            value = sum(grid_loss(m.maps(x, head if heads > 1 else None), y) for m in members) / len(members)
        else:
            value = loss_fn(config["loss"], net(x, head if heads > 1 else None), y, data["size"])
        opt.zero_grad()
        (value + penalty() if penalty is not None else value).backward()
        opt.step()
        losses.append(value.item())
        bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
    return float(np.mean(losses))
