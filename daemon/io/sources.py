"""Where records come from: files (JSONL, CSV, Parquet), memory, and Kafka
(:mod:`driftwarden.daemon.io.kafka.source`).

Every source yields :class:`Record` batches and knows positions: ``seek`` resumes after a
checkpoint, ``commit`` acknowledges what the checkpoint holds.

>>> src = MemorySource([b'{"model": "m", "id": "1"}', b'{"model": "m", "id": "2"}'])
>>> [r.offset for r in src.poll(10, 0)], src.exhausted
([0, 1], True)
>>> src.seek({"memory": 1}); [r.value for r in src.poll(10, 0)]
[b'{"model": "m", "id": "2"}']
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from itertools import islice, repeat
from pathlib import Path
from typing import Protocol, TypeGuard

import orjson
from driftwarden.daemon.io.timestamps import parse_ts

DEFAULT_PACE_GAP = 86_400.0
"""Seconds of event time past the last paced record after which a record is not waited for (as input.max_ahead)."""


@dataclass(slots=True)
class Record:
    """One raw message: its bytes and where it came from. (Not frozen: building a frozen dataclass
    costs three times as much, and a source makes one per message.)"""

    value: bytes
    partition: str
    offset: int
    ts: float | None = None
    key: bytes | None = None


class Source(Protocol):
    def poll(self, max_records: int, timeout: float) -> list[Record]: ...

    def seek(self, positions: Mapping[str, int]) -> None: ...

    def commit(self, positions: Mapping[str, int]) -> None: ...

    def close(self) -> None: ...

    @property
    def exhausted(self) -> bool: ...


Rebalance = Callable[[list[str]], None]
"""Called with the names of the partitions that arrive or go."""


class RebalancingSource(Source, Protocol):
    """A source whose partitions move between daemons (a Kafka consumer-group member): it calls
    ``on_assign`` / ``on_revoke`` / ``on_lost`` with partition names, and a failure stop closes it
    with ``revoke=False`` (nothing committed)."""

    on_assign: Rebalance | None
    on_revoke: Rebalance | None
    on_lost: Rebalance | None

    def close(self, *, revoke: bool = True) -> None: ...


def rebalances(source: Source) -> TypeGuard[RebalancingSource]:
    """Whether ``source``'s partitions move between daemons, so that state must move with them.

    >>> rebalances(MemorySource())
    False
    """
    return hasattr(source, "on_assign")


class MemorySource:
    """An in-memory source; ``push`` appends records while the daemon runs (the demo's serving app does)."""

    partition = "memory"

    def __init__(self, values: Iterable[bytes] = (), *, closed: bool = True) -> None:
        self._values: list[bytes] = list(values)
        self._next = 0
        self._closed = closed
        self._lock = threading.Condition()
        self.committed: dict[str, int] = {}

    def push(self, values: Iterable[bytes]) -> None:
        with self._lock:
            self._values.extend(values)
            self._lock.notify_all()

    def close_input(self) -> None:
        """No more records will be pushed: the source becomes exhausted once drained."""
        with self._lock:
            self._closed = True
            self._lock.notify_all()

    def poll(self, max_records: int, timeout: float) -> list[Record]:
        with self._lock:
            if self._next >= len(self._values) and not self._closed and timeout > 0:
                self._lock.wait(timeout)
            start, end = self._next, min(len(self._values), self._next + max_records)
            self._next = end
            return [Record(self._values[i], self.partition, i) for i in range(start, end)]

    def seek(self, positions: Mapping[str, int]) -> None:
        self._next = positions.get(self.partition, 0)

    def commit(self, positions: Mapping[str, int]) -> None:
        self.committed.update(positions)

    def close(self) -> None:
        self.close_input()

    @property
    def exhausted(self) -> bool:
        return self._closed and self._next >= len(self._values)


class FileSource:
    """Records from a JSONL, CSV or Parquet file, one per line or row; the position is the row number.

    ``pace`` replays by event time: 0 (default) reads as fast as possible, 1.0 in real time,
    60 one minute of event time per second. A record more than ``max_gap`` seconds of event time
    past the last one paced is released at once without moving the pace (one far-future ``ts``
    cannot stall the replay; the decoder judges it); two such in a row restart the pace there.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        fmt: str | None = None,
        pace: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        max_gap: float = DEFAULT_PACE_GAP,
    ) -> None:
        self.path = Path(path)
        self.fmt = fmt or _format_of(self.path)
        if self.fmt not in ("jsonl", "csv", "parquet"):
            raise ValueError(f"unknown file format {self.fmt!r}; use jsonl, csv or parquet")
        self.partition = f"file:{self.path.name}"
        self.pace, self._clock, self._sleep, self.max_gap = pace, clock, sleep, max_gap
        self._pace_last: float | None = None  # the latest event time paced: a watermark for pacing
        self._jumped = False
        self._rows: Iterator[bytes] | None = None
        self._next = 0
        self._start: int = 0
        self._done = False
        self._pace_origin: tuple[float, float] | None = None
        self._held: Record | None = None

    def _open(self) -> Iterator[bytes]:
        if self.fmt == "jsonl":
            return _jsonl_lines(self.path)
        return _table_rows(self.path, self.fmt)

    def poll(self, max_records: int, timeout: float) -> list[Record]:
        if self._rows is None:
            self._rows = self._open()
            for _ in range(self._start):
                if next(self._rows, None) is None:
                    break
            self._next = self._start
            self._held = None
        if self.pace > 0:
            return self._poll_paced(max_records, timeout)
        values = list(islice(self._rows, max_records))
        start = self._next
        self._next += len(values)
        if len(values) < max_records:
            self._done = True
        return list(map(Record, values, repeat(self.partition), range(start, self._next)))

    def _poll_paced(self, max_records: int, timeout: float) -> list[Record]:
        """Records whose event time is due; waits at most ``timeout`` for the first one."""
        assert self._rows is not None
        out: list[Record] = []
        waited = False
        while len(out) < max_records:
            if self._held is None:
                value = next(self._rows, None)
                if value is None:
                    self._done = True
                    break
                self._held = Record(value, self.partition, self._next)
                self._next += 1
            wait = self._due_in(self._held)
            if wait > 0:
                if out or waited:
                    break
                self._sleep(min(wait, max(timeout, 0.0)))
                waited = True
                continue
            out.append(self._held)
            self._held = None
        return out

    def _due_in(self, record: Record) -> float:
        """Seconds until ``record`` is due by event time (0 when it has no time)."""
        try:
            ts = _event_ts(record.value)
        except ValueError:
            return 0.0
        if ts is None:
            return 0.0
        now = self._clock()
        if self._pace_origin is None or (self._jumped and ts - (self._pace_last or ts) > self.max_gap):
            self._pace_origin, self._pace_last, self._jumped = (now, ts), ts, False
        last = self._pace_last if self._pace_last is not None else ts
        if ts - last > self.max_gap:
            self._jumped = True
            return 0.0
        self._jumped = False
        self._pace_last = max(last, ts)
        return self._pace_origin[0] + (ts - self._pace_origin[1]) / self.pace - now

    def seek(self, positions: Mapping[str, int]) -> None:
        self._start = positions.get(self.partition, 0)
        self._rows = None
        self._done = False

    def commit(self, positions: Mapping[str, int]) -> None:
        """Files need no acknowledgement: the checkpoint's position is where a restart resumes."""

    def close(self) -> None:
        self._rows = None

    @property
    def exhausted(self) -> bool:
        return self._done


def _format_of(path: Path) -> str:
    suffix = path.suffix.lower().lstrip(".")
    return {"json": "jsonl", "ndjson": "jsonl", "pq": "parquet"}.get(suffix, suffix)


JSONL_READ_HINT = 1 << 20
"""Bytes read at once from a JSONL file: few system calls, bounded memory."""

MAX_LINE_BYTES = 16 << 20
"""Bytes of one JSONL line kept in memory: a longer line yields only its first MAX_LINE_BYTES + 1
bytes (the decoder's size limit, smaller, makes it a ``too_large`` dead letter) and the rest is skipped."""

PACE_PEEK_BYTES = 1 << 20
"""Records longer than this are not parsed for their event time by the pacer (the decoder refuses them)."""


def _jsonl_lines(path: Path, max_line: int = MAX_LINE_BYTES) -> Iterator[bytes]:
    """The non-blank lines, without their line ends; read in chunks and split in C. Memory stays
    bounded by ``max_line``: an over-long line is cut to ``max_line + 1`` bytes."""
    carry = b""
    skipping = False  # inside an over-long line whose head was yielded
    with path.open("rb") as f:
        while chunk := f.read(JSONL_READ_HINT):
            lines = (carry + chunk).split(b"\n")
            carry = lines.pop()
            if skipping:
                if not lines:
                    carry = b""
                    continue
                lines.pop(0)  # the over-long line's tail
                skipping = False
            if len(carry) > max_line:
                lines.append(carry[: max_line + 1])
                carry, skipping = b"", True
            yield from _clean_lines(lines)
    if carry and not skipping:
        yield from _clean_lines([carry])


def _clean_lines(lines: list[bytes]) -> list[bytes]:
    lines = list(map(bytes.rstrip, lines, repeat(b"\r\n")))
    if not all(lines) or any(map(bytes.isspace, lines)):
        lines = [line for line in lines if line.strip()]
    return lines


def _table_rows(path: Path, fmt: str) -> Iterator[bytes]:
    """Rows of a flat table as wire-format events: ``model``, ``id``, ``ts``, ``prediction``,
    ``score``, ``label`` columns by name, ``attr.<name>`` columns as attributes, the rest as features."""
    import pandas as pd

    frame = pd.read_csv(path) if fmt == "csv" else pd.read_parquet(path)
    reserved = {"model", "id", "ts", "prediction", "score", "label"}
    feature_cols = [c for c in frame.columns if c not in reserved and not str(c).startswith("attr.")]
    attr_cols = [c for c in frame.columns if str(c).startswith("attr.")]
    for row in frame.to_dict("records"):
        event = {k: _clean(row[k]) for k in reserved if k in row}
        event["features"] = {k: _clean(row[k]) for k in feature_cols}
        if attr_cols:
            event["attributes"] = {k[5:]: _clean(row[k]) for k in attr_cols}
        yield orjson.dumps(event, option=orjson.OPT_SERIALIZE_NUMPY)


def _clean(v: object) -> object:
    if isinstance(v, float) and math.isnan(v):
        return None
    if hasattr(v, "item"):
        return v.item()  # type: ignore[no-any-return, union-attr]
    if hasattr(v, "isoformat"):
        return v.isoformat()  # type: ignore[union-attr]
    return v


def _event_ts(value: bytes) -> float | None:
    if len(value) > PACE_PEEK_BYTES:
        return None
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError as e:
        raise ValueError(str(e)) from None
    return parse_ts(obj.get("ts")) if isinstance(obj, dict) and obj.get("ts") is not None else None
