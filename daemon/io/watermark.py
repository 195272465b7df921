"""Event time made safe: epoch units recognised, and a watermark that one record cannot move by years.

An epoch number is read by its magnitude, and the ranges do not overlap: seconds below 1e11
(until the year 5138), milliseconds below 1e14, microseconds below 1e17, nanoseconds below 1e20.
Anything else (negative, non-finite, larger) is refused. A millisecond time before March 1973
reads as seconds in the far future and is then refused as ``ts_ahead``: no value is misread.

The :class:`TimeGuard` keeps a stream's watermark (the latest event time accepted) and refuses an
event time more than ``max_ahead`` past it — or past the broker's own time for the record, when the
source has one (Kafka), so a live stream that was quiet for a weekend is not refused. A stream
that really jumped (a replayed file with a gap) is followed once ``confirm`` records in a row,
within ``max_ahead`` of each other, agree; those records are refused, the next ones are not.

>>> epoch_seconds(1_700_000_000), epoch_seconds(1_700_000_000_000), epoch_seconds(1.7e18)
(1700000000, 1700000000.0, 1700000000.0)
>>> epoch_seconds(1e300)
Traceback (most recent call last):
...
ValueError: 'ts' 1e+300 is not epoch seconds, milliseconds, microseconds or nanoseconds
>>> g = TimeGuard(max_ahead=3600.0)
>>> g.admit([1e9, 1e9 + 1, 1e9 + 1e7, 1e9 + 2])
[None, None, 'ts_ahead', None]
>>> g.watermark
1000000002.0
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

UNITS = ((1e11, 1.0), (1e14, 1e3), (1e17, 1e6), (1e20, 1e9))
"""(exclusive upper bound, divisor to seconds) per unit: seconds, ms, µs, ns, by magnitude."""

DEFAULT_MAX_AHEAD = 86_400.0
"""Seconds an event time may lie past the watermark: a day covers clock skew and a quiet night;
a year-ahead typo or a millisecond value read as seconds does not pass."""

DEFAULT_CONFIRM = 50
"""Records in a row (within ``max_ahead`` of each other) that confirm a real jump of a stream without broker times."""


def epoch_seconds(value: float) -> float:
    """Seconds since 1970 of an epoch number in seconds, milliseconds, microseconds or nanoseconds."""
    if not (value >= 0 and value < UNITS[-1][0]):
        raise ValueError(f"'ts' {value!r} is not epoch seconds, milliseconds, microseconds or nanoseconds")
    for limit, divisor in UNITS:
        if value < limit:
            return value if divisor == 1.0 else value / divisor
    raise AssertionError("unreachable")  # pragma: no cover


def epoch_column(values: np.ndarray) -> np.ndarray | None:
    """:func:`epoch_seconds` over a float array in C; None when a value is refused."""
    if not len(values):
        return values
    lo, hi = float(values.min()), float(values.max())
    if not (lo >= 0 and hi < UNITS[-1][0]):
        return None
    if hi < UNITS[0][0]:
        return values
    out = values.copy()
    for (low, _), (limit, divisor) in zip(((0.0, 1.0), *UNITS[:-1]), UNITS, strict=True):
        if divisor != 1.0:
            pick = (values >= low) & (values < limit)
            out[pick] = values[pick] / divisor
    return out


class TimeGuard:
    """A stream's watermark, and the admission of event times against it (see the module docstring)."""

    def __init__(
        self,
        max_ahead: float | None = DEFAULT_MAX_AHEAD,
        max_behind: float | None = None,
        confirm: int = DEFAULT_CONFIRM,
    ) -> None:
        self.max_ahead, self.max_behind, self.confirm = max_ahead, max_behind, confirm
        self.watermark: float | None = None
        self._run: list[float] = []  # consecutive times refused as ahead: a jump in the making

    def _start(self, ts: Sequence[float | None]) -> float | None:
        """The watermark, or for a fresh stream the median of the batch's own times (one outlier cannot set it)."""
        if self.watermark is not None:
            return self.watermark
        own = [t for t in ts if t is not None]
        return float(np.median(own)) if own else None

    def admit(self, ts: Sequence[float | None], broker: Sequence[float | None] | None = None) -> list[str | None]:
        """Per event time (None: the event has no time of its own and is not checked): None when
        accepted, else the dead letter's reason code; the watermark advances over accepted times."""
        out: list[str | None] = []
        mark = self._start(ts)
        for i, t in enumerate(ts):
            if t is None:
                out.append(None)
                continue
            ref = mark
            b = broker[i] if broker is not None else None
            if b is not None and (ref is None or b > ref):
                ref = b
            code = None
            if ref is not None:
                if self.max_ahead is not None and t > ref + self.max_ahead:
                    code = "ts_ahead"
                elif self.max_behind is not None and mark is not None and t < mark - self.max_behind:
                    code = "ts_behind"
            if code == "ts_ahead":
                if self._run and not abs(t - self._run[0]) <= (self.max_ahead or math.inf):
                    self._run = []
                self._run.append(t)
                if len(self._run) >= self.confirm:
                    mark, self._run = max(self._run), []  # the stream moved on: follow it
            elif code is None:
                self._run = []
                mark = t if mark is None or t > mark else mark
            out.append(code)
        self.watermark = mark if mark is not None else self.watermark
        return out

    def admit_all(self, ts: np.ndarray, broker: Sequence[float | None] | None = None) -> bool:
        """Whether every time of ``ts`` (all the events' own) would be accepted by :meth:`admit`;
        if so the watermark advances as :meth:`admit` would move it. Checked in C."""
        if not len(ts):
            return True
        mark = self._start(list(ts)) if self.watermark is None else self.watermark
        assert mark is not None
        running = np.maximum.accumulate(np.concatenate(([mark], ts[:-1])))
        running = np.maximum(running, mark)
        if broker is not None and any(b is not None for b in broker):
            ref = np.maximum(running, np.array([-math.inf if b is None else b for b in broker]))
        else:
            ref = running
        if self.max_ahead is not None and bool((ts > ref + self.max_ahead).any()):
            return False
        if self.max_behind is not None and bool((ts < running - self.max_behind).any()):
            return False
        self._run = []
        self.watermark = max(mark, float(ts.max()))
        return True

    def snapshot(self) -> dict[str, float | None]:
        return {"watermark": self.watermark}

    def restore(self, state: dict[str, float | None]) -> None:
        self.watermark = state.get("watermark")
