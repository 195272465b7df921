"""The reference a standardising detector learns from its first values: running mean and sd.

A 0/1 series (every warm-up value 0 or 1, such as ``error``) gets the Bernoulli sd
``sqrt(p (1 - p))`` of its warm-up rate ``p``, with ``p`` held inside
``[RATE_FLOOR, 1 - RATE_FLOOR]``: a warm-up with no error at all would otherwise give an sd of
zero, and every later error would be an alarm.

>>> w = Warmup()
>>> for v in [0, 0, 0, 0]:
...     w.add(v)
>>> w.binary, w.mean, round(w.sd(), 4)
(True, 0.0, 0.0995)
>>> w = Warmup()
>>> for v in [1.0, 2.0, 3.0]:
...     w.add(v)
>>> w.binary, w.mean, w.sd()
(False, 2.0, 1.0)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

RATE_FLOOR = 0.01
"""Lowest rate the Bernoulli sd is computed from: below 1 % a warm-up says too little about the rate."""

SD_FLOOR = 1e-12
"""sd of a constant continuous warm-up: any later change is then news."""


class Warmup:
    """Welford's running moments, and whether every value so far was 0 or 1."""

    def __init__(self) -> None:
        self.n = 0
        self.mean = 0.0
        self.m2 = 0.0
        self.binary = True

    def add(self, v: float) -> None:
        self.n += 1
        d = v - self.mean
        self.mean += d / self.n
        self.m2 += d * (v - self.mean)
        if v != 0.0 and v != 1.0:
            self.binary = False

    def sd(self) -> float:
        """The reference sd (Bernoulli with a floor on 0/1 series)."""
        if self.binary:
            p = min(max(self.mean, RATE_FLOOR), 1.0 - RATE_FLOOR)
            return math.sqrt(p * (1.0 - p))
        sd = math.sqrt(self.m2 / (self.n - 1)) if self.n > 1 else 0.0
        return sd if sd > 0 else SD_FLOOR

    def state(self) -> dict[str, Any]:
        return {"n": self.n, "m": self.mean, "m2": self.m2, "binary": self.binary}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Warmup:
        w = cls()
        w.n, w.mean, w.m2 = int(state["n"]), float(state["m"]), float(state["m2"])
        w.binary = bool(state.get("binary", False))
        return w
