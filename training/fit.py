"""``annotate train fit``: deterministic training of the landmark network."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from annotator.crop import apply_affine, box_affine, invert_affine
from annotator.network import LandmarkNet

from .augment import JITTER, base_affine, context_points, photometric, sample
from .metrics import normalised_errors
from .prepare import load_cache


def merge_caches(paths: list[str], other: list[str] = ()) -> dict[str, np.ndarray]:
    """Concatenate caches of the same crop size; ``head`` is 1 for faces of the ``other`` caches."""
    caches = [load_cache(p) for p in paths]
    for path, cache in zip(paths, caches):
        cache["head"] = np.full(len(cache["targets"]), int(path in other))
    sizes = {int(c["size"]) for c in caches}
    if len(sizes) != 1:
        raise ValueError(f"caches have different crop sizes: {sorted(sizes)}")
    keys = ("crops", "boxes", "points", "targets", "paths", "head")
    merged = {k: np.concatenate([c[k] for c in caches]) for k in keys}
    merged.update(size=int(caches[0]["size"]), context=int(caches[0]["context"]))
    return merged


def mean_shape(targets: np.ndarray, frame: str, extent: float = 0.8) -> np.ndarray:
    """The mean box-relative shape; for the shape frame centred and scaled to ``extent`` of the crop."""
    mean = targets.mean(0)
    if frame == "box":
        return mean
    lo, hi = mean.min(0), mean.max(0)
    return 0.5 + (mean - (lo + hi) / 2) * extent / (hi - lo).max()


def loss_fn(name: str, pred: torch.Tensor, target: torch.Tensor, size: int) -> torch.Tensor:
    """Point loss in crop pixels: ``mse``, ``l1`` or ``wing`` (Feng et al. 2018, w=4, eps=1)."""
    a = ((pred - target) * size).abs()
    if name == "mse":
        per = a.pow(2)
    elif name == "l1":
        per = a
    else:
        w, eps = 4.0, 1.0
        per = torch.where(a < w, w * torch.log(1 + a / eps), a - (w - w * math.log(1 + w / eps)))
    # the mean, reduced in the order that trained the shipped weights (.mean() differs in the last bits)
    return per.sum(2).sum() / (2 * per.shape[0] * per.shape[1])


def lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    """Linear warm-up to ``peak``, then cosine decay to zero."""
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def base_affines(data: dict, frame: str, template: np.ndarray) -> np.ndarray:
    """Per face, the context crop -> network input matrix before augmentation."""
    size, side = data["size"], data["crops"].shape[1]
    pts = context_points(data["targets"], size, data["context"])
    return np.stack([base_affine(frame, side, p, template, size) for p in pts])


def batches(data: dict, bases: np.ndarray, batch: int, rng: np.random.Generator | None,
            jitter: tuple = JITTER["box"], occlude: float = 0.0) -> iter:
    """(inputs, targets, head indices) tensors; augmented and shuffled with ``rng``, in order without."""
    size, n = data["size"], len(data["crops"])
    order = rng.permutation(n) if rng is not None else np.arange(n)
    pts = context_points(data["targets"], size, data["context"])
    for i in range(0, n - (batch - 1 if rng is not None else 0), batch):
        idx = order[i:i + batch]
        pairs = [sample(data["crops"][j], pts[j], size, bases[j], rng, jitter) for j in idx]
        x = np.stack([p[0] for p in pairs]).astype(np.float32)
        if rng is not None:
            x = photometric(x, rng, occlude).astype(np.float32)
        y = np.stack([p[1] for p in pairs]).astype(np.float32)
        yield (torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(y),
               torch.from_numpy(data["head"][idx]))


def predict_cache(net: LandmarkNet, data: dict, batch: int = 256) -> np.ndarray:
    """Image-coordinate predictions on un-augmented crops of a cache.

    A shape-frame network is aligned on the ground truth here (no first
    stage), so its validation error is optimistic; ``evaluate`` runs the cascade.
    """
    net.eval()
    size, frame = data["size"], net.config["frame"]
    bases = base_affines(data, frame, net.mean_shape.numpy().astype(np.float64))
    with torch.inference_mode():
        rel = np.concatenate([net(x).numpy() for x, _, _ in batches(data, bases, batch, None)])
    out = []
    for r, base, box in zip(rel.astype(np.float64), bases, data["boxes"]):
        in_context = apply_affine(invert_affine(base), r * size - 0.5)
        out.append(apply_affine(invert_affine(box_affine(tuple(box), size, data["context"])), in_context))
    return np.stack(out)


def new_network(data: dict, arch: str, width: int, frame: str, heads: int) -> LandmarkNet:
    """A network whose input normalisation and mean shape come from the training ``data``."""
    net = LandmarkNet(arch, data["size"], width, frame=frame, heads=heads)
    crops = data["crops"].astype(np.float64)
    net.mean.copy_(torch.tensor(crops.mean((0, 1, 2))).view(1, 3, 1, 1))
    net.std.copy_(torch.tensor(crops.std((0, 1, 2))).view(1, 3, 1, 1))
    net.mean_shape.copy_(torch.tensor(mean_shape(data["targets"], frame)))
    return net


def fit(train: list[str], out: str | Path, val: list[str] | None = None, arch: str = "cnn8",
        width: int = 32, epochs: int = 60, batch: int = 64, lr: float = 2e-3, weight_decay: float = 1e-4,
        loss: str = "mse", seed: int = 0, threads: int = 2, augment: bool = True,
        frame: str = "box", other: list[str] = (), occlude: float = 0.0, command: str = "") -> dict:
    """Train on caches ``train``; writes RUN/last.pt (resumable), history.json and curves.png."""
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(threads)
    if arch == "heatmap" and frame != "shape":
        raise ValueError("the heatmap network places points inside its crop only: use it with --frame shape")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = merge_caches(train, other)
    val_data = merge_caches(val) if val else None
    size = data["size"]
    heads = 2 if other else 1
    net = new_network(data, arch, width, frame, heads)
    bases = base_affines(data, frame, net.mean_shape.numpy().astype(np.float64))
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = len(data["crops"]) // batch
    total, warmup = epochs * steps_per_epoch, max(1, steps_per_epoch * epochs // 30)
    config = {"train": [str(p) for p in train], "val": [str(p) for p in val or []], "arch": arch,
              "width": width, "epochs": epochs, "batch": batch, "lr": lr, "weight_decay": weight_decay,
              "loss": loss, "seed": seed, "threads": threads, "augment": augment, "size": size,
              "frame": frame, "command": command}
    for key, value in (("occlude", occlude), ("other", [str(p) for p in other])):
        if value:  # recorded only when used, so earlier runs' settings still match on resume
            config[key] = value
    history, start = [], 0
    last = out / "last.pt"
    if last.exists():
        state = torch.load(last, map_location="cpu", weights_only=True)
        if state["meta"]["fit"] != config | {"command": state["meta"]["fit"]["command"]}:
            raise ValueError(f"{last} was trained with other settings; use a new RUN folder")
        net.load_state_dict(state["state_dict"])
        opt.load_state_dict(state["optimizer"])
        history, start = state["meta"]["history"], len(state["meta"]["history"])
    for epoch in range(start, epochs):
        rng = np.random.default_rng([seed, epoch])
        net.train()
        losses = []
        samples = batches(data, bases, batch, rng if augment else None, JITTER[frame], occlude)
        bar = tqdm(samples, total=steps_per_epoch, desc=f"epoch {epoch + 1}/{epochs}", leave=False)
        for i, (x, y, head) in enumerate(bar):
            for g in opt.param_groups:
                g["lr"] = lr_at(epoch * steps_per_epoch + i, total, lr, warmup)
            value = loss_fn(loss, net(x, head if heads > 1 else None), y, size)
            opt.zero_grad()
            value.backward()
            opt.step()
            losses.append(value.item())
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
        row = {"epoch": epoch + 1, "loss": float(np.mean(losses))}
        if val_data is not None:
            errors = normalised_errors(predict_cache(net, val_data), val_data["points"])
            row["val_mean_error"] = float(errors.mean())
        history.append(row)
        tqdm.write(json.dumps(row))
        _save(last, net, opt, {"fit": config, "history": history})
    (out / "history.json").write_text(json.dumps(history, indent=1))
    _plot(history, out / "curves.png")
    return history[-1] if history else {}


def _save(path: Path, net: LandmarkNet, opt, meta: dict) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save({"config": net.config, "state_dict": net.state_dict(), "optimizer": opt.state_dict(),
                "meta": meta}, tmp)
    tmp.replace(path)


def _plot(history: list[dict], path: Path) -> None:
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
