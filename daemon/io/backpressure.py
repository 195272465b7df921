"""Backpressure: stop reading while the daemon's outputs or actions are behind, without leaving the group.

A check raises :class:`Backpressure` with the reason and when to look again. :class:`Flow` asks
its checks before every poll; while one raises, it pauses the source (Kafka: ``pause()`` on
every assigned partition — the consumer keeps polling, so it keeps its group membership and
takes part in rebalances) and resumes it once all pass.

>>> class Src:
...     def __init__(self): self.paused = False
...     def poll(self, n, t): return [] if self.paused else ["r"]
...     def pause(self): self.paused = True
...     def resume(self): self.paused = False
>>> busy = [3]
>>> def actions():
...     if busy[0] > 2: raise Backpressure(f"{busy[0]} actions running (max 2)", retry_after=0.0)
>>> src = Src(); flow = Flow(src, [actions])
>>> flow.poll(10, 0.0), src.paused
([], True)
>>> busy[0] = 1; flow.poll(10, 0.0), src.paused
(['r'], False)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

log = logging.getLogger("driftwarden.backpressure")

ACTIONS_RETRY_S = 1.0
"""Look again after this long when too many actions run: a retrain takes seconds to minutes."""

OUTPUTS_RETRY_S = 0.2
"""...and after this long when sink messages wait for acknowledgement: a broker answers in ms."""


class Backpressure(Exception):  # noqa: N818 - a condition, not an error
    """Consuming must wait: ``reason`` says why, ``retry_after`` (s) when to look again."""

    def __init__(self, reason: str, retry_after: float) -> None:
        super().__init__(reason)
        self.reason, self.retry_after = reason, retry_after


Check = Callable[[], None]


def running_actions(count: Callable[[], int], limit: int) -> Check:
    """Backpressure while more than ``limit`` actions run."""

    def check() -> None:
        n = count()
        if n > limit:
            raise Backpressure(f"{n} actions running (max {limit})", ACTIONS_RETRY_S)

    return check


def pending_outputs(sinks: Sequence[Any], limit: int) -> Check:
    """Backpressure while the sinks hold more than ``limit`` unacknowledged messages."""

    def check() -> None:
        n = sum(getattr(s, "pending", 0) for s in sinks)
        if n > limit:
            raise Backpressure(f"{n} output messages not acknowledged (max {limit})", OUTPUTS_RETRY_S)

    return check


class Flow:
    """Polls ``source`` unless a check raises :class:`Backpressure`; then pauses it (sources
    without ``pause`` just wait ``retry_after``) and returns no records."""

    def __init__(self, source: Any, checks: Sequence[Check], *, sleep: Callable[[float], None] = time.sleep) -> None:
        self.source, self.checks, self.sleep = source, list(checks), sleep
        self.paused_for: str | None = None
        self.pauses = 0

    def check(self) -> None:
        for c in self.checks:
            c()

    def poll(self, max_records: int, timeout: float) -> list[Any]:
        try:
            self.check()
        except Backpressure as bp:
            pausable = hasattr(self.source, "pause")
            if self.paused_for is None:
                self.pauses += 1
                log.warning("backpressure: %s; pausing the source, looking again in %.1f s", bp.reason, bp.retry_after)
                if pausable:
                    self.source.pause()
            self.paused_for = bp.reason
            if pausable:  # keep polling: group membership and rebalances go on while paused
                return list(self.source.poll(max_records, min(timeout, bp.retry_after)))
            self.sleep(min(timeout, bp.retry_after))
            return []
        if self.paused_for is not None:
            log.info("backpressure cleared (%s); resuming the source", self.paused_for)
            self.paused_for = None
            if hasattr(self.source, "resume"):
                self.source.resume()
        return list(self.source.poll(max_records, timeout))
