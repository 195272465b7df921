"""Durations as policies write them: ``30s``, ``10m``, ``6h``, ``1d``, ``1w`` (and ``for:`` also ``N windows``).

>>> parse_duration("1h30m")
5400.0
>>> parse_for("3 windows"), parse_for("90s")
((3, None), (None, 90.0))
>>> parse_resolve_after("3 evaluations"), parse_resolve_after("30m")
((3, None), (None, 1800.0))
"""

from __future__ import annotations

import re

UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)")
_WINDOWS = re.compile(r"^\s*(\d+)\s*(windows?|evaluations?)\s*$")


def parse_duration(text: str | int | float) -> float:
    """Seconds in a duration such as ``"6h"`` or ``"1h30m"``; a bare number is seconds."""
    if isinstance(text, bool):
        raise ValueError(f"not a duration: {text!r}")
    if isinstance(text, int | float):
        if text < 0:
            raise ValueError(f"a duration cannot be negative: {text}")
        return float(text)
    s = text.strip().replace(" ", "")
    pos, total = 0, 0.0
    for m in _PART.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * UNITS[m.group(2)]
        pos = m.end()
    if pos != len(s) or not s:
        raise ValueError(f"not a duration: {text!r} (use a number and a unit: 30s, 10m, 6h, 1d, 1w)")
    return total


def parse_for(text: str | int) -> tuple[int | None, float | None]:
    """``for:`` is either a count of consecutive evaluations (``"2 windows"``) or a duration."""
    if isinstance(text, str):
        m = _WINDOWS.match(text)
        if m:
            n = int(m.group(1))
            if n < 1:
                raise ValueError(f"'for' needs at least 1 window, got {text!r}")
            return n, None
    try:
        return None, parse_duration(text)
    except ValueError:
        raise ValueError(f"not a 'for' value: {text!r} (use 'N windows' or a duration such as 10m)") from None


def parse_resolve_after(text: str | int) -> tuple[int | None, float | None]:
    """``resolve_after:`` is a count of evaluations in a row where the condition did not hold
    (``"3 evaluations"``) or a duration of event time since it last held (``"30m"``)."""
    try:
        n, seconds = parse_for(text)
    except ValueError:
        raise ValueError(
            f"not a 'resolve_after' value: {text!r} (use 'N evaluations' or a duration such as 30m)"
        ) from None
    if seconds is not None and seconds <= 0:
        raise ValueError(f"'resolve_after' must be longer than 0: {text!r}")
    return n, seconds
