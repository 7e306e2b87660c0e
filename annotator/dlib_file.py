"""dlib's serialisation format, as its model files (``.dat``) are written."""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Callable

import numpy as np


def packaged_model(name: str, needed_for: str) -> Path:
    """The model file ``name`` that the ``face_recognition_models`` package ships (found without importing
    the package: its ``__init__`` needs the absent ``pkg_resources``); ``needed_for`` names the option
    in the error when the package is missing."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise RuntimeError(f"{needed_for} needs: pip install face_recognition_models")
    return Path(spec.origin).parent / "models" / name


def folded(con: dict, affine: dict | None) -> tuple[np.ndarray, np.ndarray]:
    """A convolution's weight and bias (float64) with the per-channel ``affine`` layer after it (its
    ``scale`` and ``shift``; None: none) folded in."""
    weight, bias = con["weight"].astype(np.float64), con["bias"].astype(np.float64)
    if affine is None:
        return weight, bias
    scale, shift = affine["scale"].astype(np.float64), affine["shift"].astype(np.float64)
    return weight * scale[:, None, None, None], bias * scale + shift


class Reader:
    """dlib's serialisation: variable-length integers, floats as mantissa and exponent, raw float32 tensors."""

    def __init__(self, data: bytes):
        self.data, self.at = data, 0

    def int(self) -> int:
        head = self.data[self.at]
        size = head & 0x0F
        value = int.from_bytes(self.data[self.at + 1:self.at + 1 + size], "little")
        self.at += 1 + size
        return -value if head & 0x80 else value

    def str(self) -> str:
        size = self.int()
        self.at += size
        return self.data[self.at - size:self.at].decode("ascii")

    def float(self) -> float:
        mantissa = self.int()
        return math.ldexp(mantissa, self.int())

    def bool(self) -> bool:
        self.at += 1
        return self.data[self.at - 1] == ord("1")

    def tensor(self) -> np.ndarray:
        self.expect(self.int(), 2)
        shape = [self.int() for _ in range(4)]
        values = np.frombuffer(self.data, "<f4", int(np.prod(shape)), self.at)
        self.at += values.nbytes
        return values.reshape(shape)

    def alias(self) -> list[int]:
        self.expect(self.int(), 1)
        return [self.int() for _ in range(4)]

    def con(self, name: str) -> dict:
        """A convolution layer (``con_4``, ``con_5`` or ``con_6``, its ``name`` already read): its weights
        (filters, channels, rows, columns), bias, and (rows, columns) stride and padding."""
        params = self.tensor().ravel()
        filters = self.int()
        self.int(), self.int()  # kernel rows and columns: the filters' shape below says them again
        stride, padding = (self.int(), self.int()), (self.int(), self.int())
        shape = self.alias()
        self.alias()
        [self.float() for _ in range(4)]  # learning-rate and weight-decay multipliers
        if name != "con_4":
            self.bool()  # use_bias
        if name == "con_6":
            self.bool()  # use_relu
        weights = params[:int(np.prod(shape))].reshape(shape)
        return {"kind": "con", "weight": weights, "bias": params[weights.size:weights.size + filters],
                "stride": stride, "padding": padding}

    def layers(self, versions: list[int], details: Callable[["Reader"], dict], path: str | Path) -> list[dict]:
        """Each layer's ``details`` (read by the caller's function), innermost first (``versions``: the
        layers' versions, outermost first, as the file lists them), through to the end of the file."""
        parts = []
        for version in reversed(versions):
            parts.append(details(self))
            self.bool(), self.bool(), self.bool()
            self.tensor(), self.tensor(), self.tensor()  # gradients and cached outputs (empty)
            if version == 3:
                self.int()
        if self.at != len(self.data):
            raise ValueError(f"{path}: {len(self.data) - self.at} bytes left after the network")
        return parts

    @staticmethod
    def expect(value, wanted) -> None:
        if value != wanted:
            raise ValueError(f"unexpected {value!r} in the model file (wanted {wanted!r})")
