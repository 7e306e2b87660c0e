"""dlib's serialisation format, as its model files (``.dat``) are written."""
from __future__ import annotations

import math

import numpy as np


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

    @staticmethod
    def expect(value, wanted) -> None:
        if value != wanted:
            raise ValueError(f"unexpected {value!r} in the model file (wanted {wanted!r})")
