"""dlib's CNN face detector (MMOD, ``mmod_human_face_detector.dat``) run in torch: dlib's weights, dlib's boxes.

dlib's Python build runs this network without BLAS (about 14 s for an 800 px
photo on one core); torch runs the same arithmetic in a fraction of that. This
module reads dlib's own model file and repeats dlib's steps: the tiled image
pyramid (``input_rgb_image_pyramid<pyramid_down<6>>``), the network (batch norm
folded into the convolutions), and ``loss_mmod``'s conversion of the score map to
boxes with its non-maximum suppression. ``tests/test_detectors.py`` checks the
boxes against ``dlib.cnn_face_detection_model_v1`` on real photos.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..dlib_file import Reader, folded

RATE = 5 / 6  # pyramid_down<6>: each level is 5/6 the size of the one above
MIN_LEVEL_HEIGHT = 5
MIN_SIDE = 32  # px: a smaller image holds no face the 80-px window finds (dlib's own net raises there)
PADDING, OUTER_PADDING = 10, 11  # what dlib uses for a model file of this version


@dataclass(frozen=True)
class Layer:
    """One convolution (batch norm folded in), followed by a ReLU unless it is the last."""

    weight: torch.Tensor
    bias: torch.Tensor
    stride: int
    padding: int


@dataclass(frozen=True)
class Model:
    """What the detector needs from dlib's model file."""

    layers: list[Layer]
    mean_rgb: tuple[float, float, float]
    window: tuple[int, int]  # detector window width, height (px of the pyramid level)
    nms_iou: float
    nms_covered: float


def read_model(path: str | Path) -> Model:
    """Read dlib's ``mmod_human_face_detector.dat`` (the layout of ``cnn_face_detection_model_v1``)."""
    r = Reader(Path(path).read_bytes())
    r.expect(r.int(), 1)
    r.expect(r.str(), "loss_mmod_")
    r.expect(r.int(), 1)  # mmod_options version 1: one detector window
    window = (r.int(), r.int())
    r.float(), r.float(), r.float()  # training losses and the truth-match threshold
    nms_iou, nms_covered = r.float(), r.float()
    r.float(), r.float()  # overlaps_ignore: training only
    versions = [r.int() for _ in range(19)]  # add_layer versions, outermost first
    r.expect(r.str(), "input_rgb_image_pyramid")
    mean_rgb = (r.float(), r.float(), r.float())
    parts = r.layers(versions, _layer_details, path)
    return Model(_fold(parts), mean_rgb, window, nms_iou, nms_covered)


def _layer_details(r: Reader) -> dict:
    name = r.str()
    if name in ("con_4", "con_5", "con_6"):
        return r.con(name)
    if name == "bn_con2":
        params = r.tensor().ravel()
        r.alias(), r.alias()
        r.tensor(), r.tensor()  # batch statistics of the last training step
        means, variances = r.tensor().ravel(), r.tensor().ravel()
        r.int(), r.int()
        [r.float() for _ in range(4)]
        eps = r.float()
        half = len(params) // 2
        scale = params[:half] / np.sqrt(variances + eps)
        return {"kind": "affine", "scale": scale, "shift": params[half:] - scale * means}
    if name == "relu_":
        return {"kind": "relu"}
    raise ValueError(f"unexpected layer {name!r} in the model file")


def _fold(parts: list[dict]) -> list[Layer]:
    """Convolutions with the affine layer after each folded in."""
    layers = []
    for i, part in enumerate(parts):
        if part["kind"] == "con":
            after = parts[i + 1] if i + 1 < len(parts) else {}
            weight, bias = folded(part, after if after.get("kind") == "affine" else None)
            layers.append(Layer(torch.tensor(weight, dtype=torch.float32), torch.tensor(bias, dtype=torch.float32),
                                part["stride"][0], part["padding"][0]))
    return layers


def pyramid_rects(height: int, width: int) -> tuple[list[tuple[int, int, int, int]], int, int]:
    """Where dlib tiles each pyramid level (left, top, right, bottom, inclusive) and the tiled image's size."""
    sizes = [(width, height)]
    while True:
        height, width = math.floor(RATE * height), math.floor(RATE * width)
        if height * width == 0 or height < MIN_LEVEL_HEIGHT:
            break
        sizes.append((width, height))
    top_w, top_h = sizes[0]
    total = sum(h + PADDING for _, h in sizes) - 2 * PADDING
    column, previous = 0, 0
    for w, h in sizes:  # the first column goes down until the rest fits beside it
        if w <= top_w - previous - PADDING and (column - top_h) * 2 >= total - top_h:
            break
        column += h + PADDING
        previous = w
    column -= PADDING
    rects, y = [], OUTER_PADDING
    for w, h in sizes:
        if y >= column + OUTER_PADDING:
            break
        rects.append((OUTER_PADDING, y, OUTER_PADDING + w - 1, y + h - 1))
        y += h + PADDING
    y -= PADDING
    first = rects[0]
    for w, h in sizes[len(rects):]:  # the second column, upwards from the bottom right
        rect = (OUTER_PADDING + top_w - w, y - h, OUTER_PADDING + top_w - 1, y - 1)
        if rect[0] <= first[2] and rect[1] <= first[3]:
            break  # it would overlap the full-size level
        rects.append(rect)
        y -= h + PADDING
    return rects, column + 2 * OUTER_PADDING, top_w + 2 * OUTER_PADDING


class MMODDetector:
    """dlib's CNN face detector on an RGB image, run by torch on ``device``."""

    def __init__(self, path: str | Path, device: str = "cpu"):
        self.model = read_model(path)
        self.device = torch.device(device)
        layers = [Layer(l.weight.to(self.device), l.bias.to(self.device), l.stride, l.padding)
                  for l in self.model.layers]
        # the leading stride-2 layers without padding: each output row depends on a fixed band of input rows
        split = next(i for i, l in enumerate(layers) if l.stride == 1 or l.padding)
        self.downsampler, self.rest = layers[:split], layers[split:]
        mean = torch.tensor(self.model.mean_rgb, dtype=torch.float32)
        self.mean = mean.view(1, 3, 1, 1).to(self.device)

    @torch.inference_mode()
    def __call__(self, rgb: np.ndarray, threshold: float = 0.0) -> list[tuple[tuple[int, int, int, int], float]]:
        """Boxes (left, top, right, bottom, inclusive) and scores above ``threshold``, best first, after NMS."""
        if min(rgb.shape[:2]) < MIN_SIDE:
            return []
        rects, rows, cols = pyramid_rects(*rgb.shape[:2])
        scores = self._scores(rgb, rects, rows, cols)
        return self._boxes(scores, rects, threshold)

    def _scores(self, rgb: np.ndarray, rects, rows: int, cols: int) -> np.ndarray:
        x = self._downsampled(self._tiled(rgb, rects, rows, cols))
        for i, layer in enumerate(self.rest):
            x = F.conv2d(x, layer.weight, layer.bias, layer.stride, layer.padding)
            if i + 1 < len(self.rest):
                x = F.relu_(x)
        return x[0, 0].float().cpu().numpy()

    def _tiled(self, rgb: np.ndarray, rects, rows: int, cols: int) -> torch.Tensor:
        """dlib's tiled pyramid of the normalised image, each level resized from the one above.

        Held in float16 (half the memory: a 24 MP photo's default scan tiles
        about 22 million pixels); levels are computed in float32.
        """
        tiled = torch.zeros(1, 3, rows, cols, dtype=torch.float16, device=self.device)
        image = torch.from_numpy(np.ascontiguousarray(rgb)).to(self.device).permute(2, 0, 1)[None]
        left, top, right, bottom = rects[0]
        for c in range(3):  # a channel at a time: no full-size float copy of the image
            tiled[:, c, top:bottom + 1, left:right + 1] = (image[:, c].float() - self.mean[0, c]) / 256.0
        for above, (left, top, right, bottom) in zip(rects, rects[1:]):
            level = tiled[:, :, above[1]:above[3] + 1, above[0]:above[2] + 1].float()
            tiled[:, :, top:bottom + 1, left:right + 1] = F.interpolate(
                level, size=(bottom - top + 1, right - left + 1), mode="bilinear", align_corners=True)
        return tiled

    def _downsampled(self, x: torch.Tensor, band: int = 32) -> torch.Tensor:
        """The downsampling layers, ``band`` output rows at a time (memory: a band, not the whole
        full-resolution activation); the same result as running them on the whole image."""
        step, reach, rows = 1, 0, x.shape[2]
        for layer in self.downsampler:
            reach += (layer.weight.shape[2] - 1) * step
            step *= layer.stride
            rows = (rows - layer.weight.shape[2]) // layer.stride + 1
        parts = []
        for a in range(0, rows, band):
            b = min(rows, a + band)
            y = x[:, :, a * step:(b - 1) * step + reach + 1].float().contiguous(memory_format=torch.channels_last)
            for layer in self.downsampler:
                y = F.relu_(F.conv2d(y, layer.weight, layer.bias, layer.stride, layer.padding))
            parts.append(y)
        return torch.cat(parts, 2).contiguous(memory_format=torch.channels_last)

    def _boxes(self, scores: np.ndarray, rects, threshold: float):
        rows, cols = np.nonzero(scores > threshold)
        order = np.argsort(-scores[rows, cols], kind="stable")
        width, height = self.model.window
        kept: list[tuple[tuple[int, int, int, int], float]] = []
        for r, c in zip(rows[order], cols[order]):
            x, y = self._input_point(c), self._input_point(r)
            box = _to_image((x - (width - 1) / 2, y - (height - 1) / 2, x + (width - 1) / 2, y + (height - 1) / 2),
                            rects)
            if not any(self._overlaps(box, other) for other, _ in kept):
                kept.append((box, float(scores[r, c])))
        return kept

    def _input_point(self, v: float) -> float:
        """A score-map position in the tiled image (each layer: ``p * stride - padding + kernel // 2``)."""
        for layer in reversed(self.model.layers):
            v = v * layer.stride - layer.padding + layer.weight.shape[-1] // 2
        return v

    def _overlaps(self, a, b) -> bool:
        """dlib's test_box_overlap: the intersection over the box around both above the threshold, or one box
        covered by the other beyond its share."""
        inner = _area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))
        if inner == 0:
            return False
        around = _area((min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])))
        return (inner / around > self.model.nms_iou
                or inner / _area(a) > self.model.nms_covered or inner / _area(b) > self.model.nms_covered)


def _area(r) -> int:
    return max(0, r[2] - r[0] + 1) * max(0, r[3] - r[1] + 1)


def _lround(v: float) -> int:
    return int(math.copysign(math.floor(abs(v) + 0.5), v))


def _to_image(box, rects) -> tuple[int, int, int, int]:
    """A box in the tiled image mapped to the original image through its nearest level, rounded as dlib does."""
    cx, cy = _lround((box[0] + box[2]) / 2), _lround((box[1] + box[3]) / 2)
    level = min(range(len(rects)), key=lambda i: (_distance(rects[i], cx, cy), i))
    left, top = rects[level][:2]
    x0, y0, x1, y1 = box[0] - left, box[1] - top, box[2] - left, box[3] - top
    for _ in range(level):  # pyramid_down<6>::point_up
        x0, y0, x1, y1 = (v / RATE + 0.3 for v in (x0, y0, x1, y1))
    return _lround(x0), _lround(y0), _lround(x1), _lround(y1)


def _distance(rect, x: int, y: int) -> float:
    nx, ny = min(max(x, rect[0]), rect[2]), min(max(y, rect[1]), rect[3])
    return math.hypot(nx - x, ny - y)
