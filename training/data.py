"""Training data: caches merged into one set, and the (augmented) batches a network trains on."""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from annotator.crop import context_box, frame_affine

from .augment import JITTER, context_points, photometric, sample
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


def base_affines(data: dict, frame: str, template: np.ndarray) -> np.ndarray:
    """Per face, the context crop -> network input matrix before augmentation (as at inference)."""
    size, context = data["size"], data["context"]
    box = context_box(size, context)
    pts = context_points(data["targets"], size, context)
    return np.stack([frame_affine(frame, size, box, p, template) for p in pts])


def batches(data: dict, bases: np.ndarray, batch: int, rng: np.random.Generator | None,
            jitter: tuple = JITTER["box"], occlude: float = 0.0, lowres: float = 0.0, stretch: float = 0.0
            ) -> Iterator[tuple[torch.Tensor, ...]]:
    """(inputs, targets, head indices) tensors; augmented and shuffled with ``rng``, in order without."""
    size, n = data["size"], len(data["crops"])
    order = rng.permutation(n) if rng is not None else np.arange(n)
    pts = context_points(data["targets"], size, data["context"])
    for i in range(0, n - (batch - 1 if rng is not None else 0), batch):
        idx = order[i:i + batch]
        pairs = [sample(data["crops"][j], pts[j], size, bases[j], rng, jitter, lowres, stretch) for j in idx]
        x = np.stack([p[0] for p in pairs]).astype(np.float32)
        if rng is not None:
            x = photometric(x, rng, occlude).astype(np.float32)
        y = np.stack([p[1] for p in pairs]).astype(np.float32)
        yield (torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(y),
               torch.from_numpy(data["head"][idx]))
