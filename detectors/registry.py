"""The monitor kinds by the names policies use.

>>> sorted(MONITORS)[:3]
['adwin', 'ddm', 'eddm']
>>> build("adwin", {"series": "error"})
Adwin(series='error', delta=0.002, clock=32, grace_period=10)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from detectors.base import Monitor
from detectors.drift import FeatureDrift
from detectors.performance import Performance
from detectors.streaming import Adwin, Ddm, Eddm, HddmA, HddmW, Kswin, PageHinkley

MONITORS: dict[str, type[Monitor]] = {
    cls.kind: cls
    for cls in (Adwin, PageHinkley, Kswin, Ddm, Eddm, HddmA, HddmW, FeatureDrift, Performance)
}


def build(kind: str, params: Mapping[str, Any]) -> Monitor:
    """A monitor of ``kind`` configured by ``params``; ValueError names what is wrong."""
    try:
        cls = MONITORS[kind]
    except KeyError:
        raise ValueError(f"unknown monitor kind {kind!r}; known kinds: {', '.join(sorted(MONITORS))}") from None
    try:
        return cls(**params)
    except TypeError as e:
        raise ValueError(f"{kind}: {e}") from None
