"""Several sources read as one stream, merged by event time: predictions in one file, labels in another.

The merge is deterministic — the earliest event time first, ties in the order the sources were
given — so a replay gives the same event indices whatever the batch size. Records without a
time sort as if they had the time of the last record seen from their source.

>>> from driftwarden.daemon.io.sources import MemorySource
>>> preds = MemorySource([b'{"model": "m", "id": "a", "ts": 1, "prediction": 1}',
...                       b'{"model": "m", "id": "b", "ts": 3, "prediction": 0}'])
>>> labels = MemorySource([b'{"model": "m", "id": "a", "ts": 2, "label": 1}'])
>>> labels.partition = "labels"
>>> merged = MergedSource([preds, labels])
>>> [(r.partition, r.offset) for r in merged.poll(10, 0)], merged.exhausted
([('memory', 0), ('labels', 0), ('memory', 1)], True)
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Mapping, Sequence

import orjson
from driftwarden.daemon.io.sources import Record, Source
from driftwarden.daemon.io.timestamps import parse_ts

READ_AHEAD = 1000
"""Records read ahead from each source to merge by time."""


class MergedSource:
    """A k-way merge by event time of finite sources (files, memory)."""

    def __init__(self, sources: Sequence[Source]) -> None:
        if not sources:
            raise ValueError("MergedSource needs at least one source")
        self.sources = list(sources)
        self._queues: list[deque[tuple[float, Record]]] = [deque() for _ in self.sources]
        self._last_ts = [float("-inf")] * len(self.sources)

    def _fill(self, i: int, timeout: float) -> None:
        source, queue = self.sources[i], self._queues[i]
        if queue or source.exhausted:
            return
        for record in source.poll(READ_AHEAD, timeout):
            ts = _ts(record.value)
            if ts is None:
                ts = self._last_ts[i]
            self._last_ts[i] = ts
            queue.append((ts, record))

    def poll(self, max_records: int, timeout: float) -> list[Record]:
        out: list[Record] = []
        heap: list[tuple[float, int]] = []
        for i in range(len(self.sources)):
            self._fill(i, timeout)
            if self._queues[i]:
                heapq.heappush(heap, (self._queues[i][0][0], i))
        while heap and len(out) < max_records:
            _, i = heapq.heappop(heap)
            out.append(self._queues[i].popleft()[1])
            if not self._queues[i]:
                self._fill(i, 0.0)
                if not self._queues[i] and not self.sources[i].exhausted:
                    break  # a live source has nothing yet: do not run ahead of it
            if self._queues[i]:
                heapq.heappush(heap, (self._queues[i][0][0], i))
        return out

    def seek(self, positions: Mapping[str, int]) -> None:
        for source, queue in zip(self.sources, self._queues, strict=True):
            queue.clear()
            source.seek(positions)

    def commit(self, positions: Mapping[str, int]) -> None:
        for source in self.sources:
            source.commit(positions)

    def close(self) -> None:
        for source in self.sources:
            source.close()

    @property
    def exhausted(self) -> bool:
        return all(s.exhausted for s in self.sources) and not any(self._queues)


def _ts(value: bytes) -> float | None:
    try:
        obj = orjson.loads(value)
        raw = obj.get("ts") if isinstance(obj, dict) else None
        return None if raw is None else parse_ts(raw)
    except (orjson.JSONDecodeError, ValueError):
        return None
