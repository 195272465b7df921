"""Actions waiting for live labeled traffic: a shadowed candidate's judgement and a deploy's
verification.

A :class:`Window` counts only events whose index is above ``after``: for ``shadow`` the
decision's index (the candidate never trained on them), for ``verify`` the last buffered index
when the deploy finished. A verify window is watched with ``after=None`` by the worker that
finished the deploy; the loop thread :meth:`LiveWindows.begin`\\ s it at its next poll. The
window is complete once the ``size`` most recent labeled rows are all newer than ``after``.

>>> import pandas as pd
>>> rows = pd.DataFrame({"__index": range(10)})
>>> windows = LiveWindows(lambda model, upto, last: rows.tail(last))
>>> windows.watch("m/r/1", VERIFY, None, 3)
>>> windows.begin("m/r/1", "m")
Window(phase='verify', after=9, size=3)
>>> windows.complete("m", windows.get("m/r/1")) is None  # nothing newer than event 9 yet
True
>>> rows = pd.DataFrame({"__index": range(13)})
>>> windows.complete("m", windows.get("m/r/1"))["__index"].tolist()
[10, 11, 12]
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass, replace
from typing import Any, Literal

log = logging.getLogger("driftwarden.actions")

DataProvider = Callable[[str, int, int], Any]
"""(model, upto event index, last N rows) → the labeled frame (features, ``__label``,
``__index``…)."""

ALL_ROWS = sys.maxsize
"""``upto`` meaning every buffered row."""

Phase = Literal["shadow", "verify"]
SHADOW: Phase = "shadow"
VERIFY: Phase = "verify"


@dataclass(frozen=True)
class Window:
    phase: Phase
    after: int | None
    """Only events with a higher index count; ``None`` until :meth:`LiveWindows.begin`."""
    size: int


class LiveWindows:
    """The windows being waited for, by action key; safe to use from worker threads."""

    def __init__(self, data: DataProvider) -> None:
        self.data = data
        self._windows: dict[str, Window] = {}
        self._lock = threading.Lock()

    def watch(self, key: str, phase: Phase, after: int | None, size: int) -> None:
        with self._lock:
            self._windows[key] = Window(phase, after, size)
        log.info("action %s waits for %d live labeled events (%s)", key, size, phase)

    def unwatch(self, key: str) -> None:
        with self._lock:
            self._windows.pop(key, None)

    def get(self, key: str) -> Window | None:
        with self._lock:
            return self._windows.get(key)

    def keys(self) -> set[str]:
        with self._lock:
            return set(self._windows)

    def waiting(self, excluding: Collection[str] = ()) -> list[tuple[str, Window]]:
        """The windows, in the order they were watched, but those of ``excluding``."""
        with self._lock:
            return [(k, w) for k, w in self._windows.items() if k not in excluding]

    def begin(self, key: str, model: str) -> Window:
        """Start ``key``'s window now: it counts the events after the last one buffered."""
        after = self.last_index(model)
        with self._lock:
            window = self._windows[key] = replace(self._windows[key], after=after)
        return window

    def complete(self, model: str, window: Window | None) -> Any:
        """The window's rows once it is complete, else ``None``."""
        if window is None or window.after is None:
            return None
        frame = self.data(model, ALL_ROWS, window.size)
        if len(frame) < window.size or int(frame["__index"].min()) <= window.after:
            return None
        return frame

    def last_index(self, model: str) -> int:
        frame = self.data(model, ALL_ROWS, 1)
        return int(frame["__index"].iloc[-1]) if len(frame) else -1
