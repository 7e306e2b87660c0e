"""68-point landmarkers on detector boxes: our packaged network and dlib's shape predictor."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .checkpoint import DEFAULT_WEIGHTS, load_cascade
from .crop import (Box, apply_affine, box_affine, frame_affine, invert_affine, similarity_angle, to_crop_pixels,
                   turned, warp)
from .dlib_file import packaged_model
from .network import FLIP_PERMUTATION, LandmarkNet, RollNet, is_grid


def load_stages(path: str | Path = DEFAULT_WEIGHTS) -> tuple[list[LandmarkNet], dict, RollNet | None]:
    """The cascade's networks ready for inference, the checkpoint's metadata (training commands, ...) and
    its roll estimator (None: the weights have none)."""
    stages, meta, roll = load_cascade(path)
    return [for_inference(net) for net in stages], meta, for_inference(roll) if roll else None


def for_inference(net: torch.nn.Module) -> torch.nn.Module:
    """Eval mode, batch norm folded into the convolutions, channels-last layout (about 2x faster on CPU)."""
    net.eval()
    for module in list(net.modules()):
        if isinstance(module, nn.Sequential):
            names = list(module._modules)
            for a, b in zip(names, names[1:]):
                conv, bn = module._modules[a], module._modules[b]
                if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                    module._modules[a], module._modules[b] = fuse_conv_bn_eval(conv, bn), nn.Identity()
    return net.to(memory_format=torch.channels_last)


def forward_both(net: torch.nn.Module, crops: np.ndarray, chunk: int = 64, device: str = "cpu",
                 mirror: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """A network's outputs for (N, S, S, 3) uint8 crops and, with ``mirror``, for their mirror images
    (as the network gives them; None without ``mirror``).

    Each crop and its mirror image go through the network in one batch, ``chunk`` crops at a time:
    on CPU, batches that fit the caches are faster per face.
    """
    plain, mirrored = [], []
    with torch.inference_mode():
        for i in range(0, len(crops), chunk):
            x = torch.from_numpy(crops[i:i + chunk]).to(device).permute(0, 3, 1, 2).float()
            if mirror:
                x = torch.cat([x, x.flip(3)])
            out = net(x.contiguous(memory_format=torch.channels_last)).cpu().numpy().astype(np.float64)
            half = len(out) // 2 if mirror else len(out)
            plain.append(out[:half])
            mirrored.append(out[half:])
    return np.concatenate(plain), np.concatenate(mirrored) if mirror else None


def predict_both(net: LandmarkNet, crops: np.ndarray, chunk: int = 64, device: str = "cpu",
                 mirror: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Crop-relative points of (N, S, S, 3) uint8 crops and of their mirror images (mapped back to the crops).

    With ``mirror`` False only the crops go through, and their points stand in for the mirror images'.
    """
    plain, mirrored = forward_both(net, crops, chunk, device, mirror)
    if mirrored is None:
        return plain, plain
    back = mirrored[:, FLIP_PERMUTATION]
    back[..., 0] = 1 - back[..., 0]
    return plain, back


def predict_roll(net: RollNet, crops: np.ndarray, device: str = "cpu", mirror: bool = True
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Per (N, S, S, 3) box crop, the face's roll (radians, image coordinates) from the crop and its mirror
    image, and how far the two disagree (radians; without ``mirror``, from the crop alone and 0)."""
    out, flipped = forward_both(net, crops, device=device, mirror=mirror)
    plain = np.arctan2(out[:, 1], out[:, 0])
    if flipped is None:
        return plain, np.zeros(len(out))
    mirrored = -np.arctan2(flipped[:, 1], flipped[:, 0])  # a mirrored face turns the other way
    return np.angle(np.exp(1j * plain) + np.exp(1j * mirrored)), np.abs(np.angle(np.exp(1j * (plain - mirrored))))


class NetworkLandmarker:
    """Our network cascade: every box of an image goes through each stage as one batch."""

    name = "network"

    def __init__(self, weights: str | Path = DEFAULT_WEIGHTS, flip: bool | None = None, device: str = "cpu"):
        self.stages, self.meta, self.roll = load_stages(weights)
        self.device = device
        self.stages = [net.to(device) for net in self.stages]
        self.roll = self.roll.to(device) if self.roll else None
        self.flip = self.meta.get("flip", False) if flip is None else flip

    def predict(self, image: np.ndarray, boxes: list[Box]) -> np.ndarray:
        """(N, 68, 2) 0-based image points for each box of a BGR image."""
        return self.predict_many([image], [boxes])

    def predict_many(self, images: list[np.ndarray], boxes: list[list[Box]]) -> np.ndarray:
        """Points for the boxes of several images, all faces through each stage as one batch."""
        return self.predict_with_features(images, boxes)[0]

    def predict_with_error(self, images: list[np.ndarray], boxes: list[list[Box]]
                           ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(N, 68, 2) points, (N,) expected errors and (N, 68) per-point expected errors (None: the
        weights' last stage gives no per-point uncertainty) for the boxes of several images."""
        points, features, spreads = self.predict_with_features(images, boxes)
        expected = expected_error(features, self.meta.get("error_model"))
        return points, expected, point_errors(spreads, expected)

    def predict_with_features(self, images: list[np.ndarray], boxes: list[list[Box]]
                              ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(N, 68, 2) points, the (N, F) features the error estimate is computed from, and the (N, 68)
        per-point spreads (None without a grid stage last).

        With a roll estimator, it turns each box's crop so that the face is upright for the first
        stage. The first and last stages see each face and its mirror image and pass on their
        average (a middle stage sees the face alone); how much the two disagree, how far the last
        stage moved the points, whether the roll estimate agrees with the points, and the grid
        stage's uncertainty predict the error (see :func:`error_features`). A point's spread is the grid stage's Laplace
        scale for it (face and mirror image averaged) in the metric's units (over sqrt(area of the
        points' box)).
        """
        faces = [(image, b) for image, bs in zip(images, boxes) for b in bs]
        grid = is_grid(self.stages[-1].config["arch"])
        if not faces:
            width = 3 + 3 * (self.roll is not None) + grid
            return np.zeros((0, 68, 2)), np.zeros((0, width)), np.zeros((0, 68)) if grid else None
        rolls = self._rolls(faces)
        points, outputs = [None] * len(faces), []
        for i, net in enumerate(self.stages):
            size, frame = net.config["size"], net.config.get("frame", "box")
            template = net.mean_shape.numpy().astype(np.float64)
            ms = [frame_affine(frame, size, b, p, template) for (_, b), p in zip(faces, points)]
            if frame == "box" and rolls is not None:
                ms = [turned(m, size, a) for m, a in zip(ms, rolls[0])]
            crops = np.stack([warp(image, m, size) for (image, _), m in zip(faces, ms)])
            back = [invert_affine(m) for m in ms]
            mirror = i in (0, len(self.stages) - 1)  # the middle stages' mirror images add little but time
            pair = predict_both(net, crops, device=self.device, mirror=mirror)
            outputs.append([np.stack([apply_affine(b, to_crop_pixels(r[:, :2], size)) for b, r in zip(back, rel)])
                            for rel in pair])
            points = list((outputs[-1][0] + outputs[-1][1]) / 2)
        final = np.stack(points) if self.flip else outputs[-1][0]
        features = error_features(outputs)
        if rolls is not None:
            template = self.stages[0].mean_shape.numpy().astype(np.float64)
            final_roll = similarity_angle(template, final)
            again = self._rolls(faces, final_roll, mirror=False)[0]  # ~0 when the points' roll is the face's
            features = np.hstack([features, roll_features(rolls, final_roll, again)])
        if not grid:
            return final, features, None
        scale = size / np.sqrt(np.abs([np.linalg.det(m[:, :2]) for m in ms]))  # crop-relative -> image pixels
        spreads = (np.exp(pair[0][..., 2]) + np.exp(pair[1][..., 2])) / 2 * scale[:, None] / _extent(final)[:, None]
        return final, np.hstack([features, np.log(spreads.mean(1, keepdims=True))]), spreads

    def _rolls(self, faces: list[tuple[np.ndarray, Box]], turn: np.ndarray | None = None,
               mirror: bool = True) -> tuple[np.ndarray, np.ndarray] | None:
        """The roll estimator's (roll, mirror disagreement) of each face (its box's crop turned by ``-turn``
        radians), or None without one."""
        if self.roll is None:
            return None
        size = self.roll.config["size"]
        turn = np.zeros(len(faces)) if turn is None else turn
        crops = np.stack([warp(image, turned(box_affine(b, size), size, a), size)
                          for (image, b), a in zip(faces, turn)])
        return predict_roll(self.roll, crops, self.device, mirror)


def _extent(points: np.ndarray) -> np.ndarray:
    """sqrt(area) of each (N, 68, 2) face's points' bounding box: the metric's unit of length."""
    span = points.max(1) - points.min(1)
    return np.sqrt(np.maximum(span[:, 0] * span[:, 1], 1e-9))


def _spread(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean point distance between two (N, 68, 2) predictions over sqrt(area of ``b``'s points' box)."""
    return np.linalg.norm(a - b, axis=2).mean(1) / _extent(b)


def error_features(outputs: list[list[np.ndarray]]) -> np.ndarray:
    """(N, 3) log disagreements from each stage's (plain, mirrored) points.

    Face vs mirror image in the last stage and in the first, and the first
    stage's average vs the last stage's.
    """
    (first, first_m), (last, last_m) = outputs[0], outputs[-1]
    spreads = [_spread(last_m, last), _spread(first_m, first), _spread((first + first_m) / 2, (last + last_m) / 2)]
    return np.log(np.stack(spreads, 1) + 1e-4)


N_FEATURES = 7  # error features of the shipped weights: error_features, roll_features, the grid stage's spread


def roll_features(rolls: tuple[np.ndarray, np.ndarray], final_roll: np.ndarray, again: np.ndarray) -> np.ndarray:
    """(N, 3) log angles (radians): the roll estimate's face/mirror disagreement, how far the final
    points' roll lies from the estimate, and the roll the estimator still sees in the box's crop turned
    upright by the final points' roll (points laid at the wrong roll leave the face turned there)."""
    estimate, spread = rolls
    off = np.abs(np.angle(np.exp(1j * (final_roll - estimate))))
    return np.log(np.stack([spread, off, np.abs(again)], 1) + 1e-2)


def expected_error(features: np.ndarray, model: dict | None = None) -> np.ndarray:
    """Per-face expected error in the accuracy metric's units (mean error / sqrt(area of the points' box)).

    A log-linear model of :func:`error_features` (and :func:`roll_features`), fitted on held-out faces by
    ``annotate train calibrate`` and stored in the weights' metadata; with a ``failure`` part, the
    mixture of that model and the failures' mean error, weighted by the logistic chance of a failure.
    """
    if model is None:  # uncalibrated: the last stage's face/mirror disagreement
        model = {"coef": [1.0] + [0.0] * (features.shape[1] - 1), "intercept": 0.0}
    good = np.exp(features @ np.asarray(model["coef"]) + model["intercept"])
    if "failure" not in model:
        return good
    fail = model["failure"]
    p = 1 / (1 + np.exp(-(features @ np.asarray(fail["coef"]) + fail["intercept"])))
    return (1 - p) * good + p * fail["error"]


def point_errors(spreads: np.ndarray | None, expected: np.ndarray) -> np.ndarray | None:
    """(N, 68) per-point expected errors (each point's expected distance from where it belongs, over
    sqrt(area of the points' box): the units of :func:`expected_error`): the face's ``expected`` error
    shared among its points in proportion to the grid stage's ``spreads``, so that their mean is the
    face's; None without spreads."""
    if spreads is None:
        return None
    return expected[:, None] * spreads / spreads.mean(1, keepdims=True)


def dlib_model_path() -> Path:
    """dlib's shape_predictor_68_face_landmarks.dat from the face_recognition_models package."""
    return packaged_model("shape_predictor_68_face_landmarks.dat", "--landmarker dlib")


@lru_cache(maxsize=None)
def _shape_predictor(model: str | None = None):
    import dlib
    return dlib.shape_predictor(model or str(dlib_model_path()))


class DlibLandmarker:
    """dlib's 68-point ensemble-of-regression-trees model (its own, or another ``.dat``), for comparison."""

    name = "dlib"

    def __init__(self, model: str | Path | None = None):
        self.model = str(model) if model else None

    def predict_with_error(self, images: list[np.ndarray], boxes: list[list[Box]]
                           ) -> tuple[np.ndarray, np.ndarray, None]:
        """Points for the boxes of several images; dlib gives no error estimate (NaN) and no per-point one."""
        points = [self.predict(image, bs) for image, bs in zip(images, boxes)]
        points = np.concatenate(points) if points else np.zeros((0, 68, 2))
        return points, np.full(len(points), np.nan), None

    def predict(self, image: np.ndarray, boxes: list[Box]) -> np.ndarray:
        import cv2
        import dlib
        if not boxes:
            return np.zeros((0, 68, 2))
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        shapes = [_shape_predictor(self.model)(rgb, dlib.rectangle(*b)) for b in boxes]
        return np.array([[(p.x, p.y) for p in s.parts()] for s in shapes], dtype=np.float64)


def make_landmarker(name: str = "network", weights: str | Path | None = None, flip: bool | None = None,
                    device: str = "cpu"):
    """``network`` (ours, packaged weights unless ``weights`` given, on ``device``) or ``dlib`` (its model
    unless a .dat given; CPU only)."""
    if name == "dlib":
        return DlibLandmarker(weights)
    return NetworkLandmarker(weights or DEFAULT_WEIGHTS, flip, device)


@lru_cache(maxsize=None)
def cached_landmarker(name: str = "network", weights: str | None = None, flip: bool | None = None,
                      device: str = "cpu"):
    """One landmarker per worker process, torch and OpenCV on one thread (processes don't fight)."""
    one_thread()
    return make_landmarker(name, weights, flip, device)


def one_thread() -> None:
    """torch and OpenCV on one thread in this process: each worker process is one core's work."""
    import cv2
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
