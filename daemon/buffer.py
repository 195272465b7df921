"""The recent labeled events of one model, kept for retraining as Parquet segments on disk.

Rows arrive through :meth:`add` and wait in memory until :meth:`flush` (called before the
store's checkpoint transaction) writes them as one segment; only then do they leave memory, so
the buffer's memory is bounded by one checkpoint interval, whatever ``max_rows`` is. Segments
wholly older than the newest ``max_rows`` rows are deleted. On restart, rows past the index the
checkpoint recorded are dropped, since the source replays them.

>>> import tempfile
>>> from daemon.join import Joined
>>> buf = LabeledBuffer(tempfile.mkdtemp(), max_rows=3)
>>> for i in range(5): buf.add(Joined(i, float(i), str(i), {"x": float(i)}, {}, 1, None, i % 2))
>>> buf.flush(); frame = buf.frame(); list(frame["x"]), list(frame["__label"])
([2.0, 3.0, 4.0], [0, 1, 0])
>>> LabeledBuffer(buf.root, max_rows=3, upto=3).frame()["__index"].tolist()
[1, 2, 3]
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from daemon.join import Joined

DEFAULT_MAX_ROWS = 50_000
"""Labeled rows kept per model unless a retrain action asks for more."""

MAX_SEGMENTS = 64
"""Segments before the oldest are merged, so a restart or an export reads few files."""


@dataclass(frozen=True, slots=True)
class Segment:
    path: Path
    first: int
    last: int
    rows: int


class LabeledBuffer:
    def __init__(self, root: str | Path, max_rows: int = DEFAULT_MAX_ROWS, upto: int | None = None) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_rows = max_rows
        self._unflushed: list[dict[str, Any]] = []
        self._segments: list[Segment] = []
        self._load(upto)

    def __len__(self) -> int:
        return min(self.max_rows, sum(s.rows for s in self._segments) + len(self._unflushed))

    @property
    def last_index(self) -> int:
        if self._unflushed:
            return int(self._unflushed[-1]["__index"])
        return self._segments[-1].last if self._segments else -1

    def add(self, row: Joined) -> None:
        record = {**row.features, "__label": row.label, "__prediction": row.prediction,
                  "__id": row.id, "__ts": row.ts, "__index": row.index}
        for k, v in row.attributes.items():
            record[f"__attr_{k}"] = v
        self._unflushed.append(record)

    def frame(self, upto: int | None = None, last: int | None = None) -> pd.DataFrame:
        """The newest ``last`` rows (default ``max_rows``) with index <= ``upto``, oldest first."""
        want = min(last or self.max_rows, self.max_rows)
        parts: list[pd.DataFrame] = []
        pending = [r for r in self._unflushed if upto is None or r["__index"] <= upto]
        have = len(pending)
        if pending:
            parts.append(pd.DataFrame.from_records(pending))
        for seg in reversed(self._segments):
            if have >= want:
                break
            if upto is not None and seg.first > upto:
                continue
            part = pd.read_parquet(seg.path)
            if upto is not None and seg.last > upto:
                part = part[part["__index"] <= upto]
            parts.insert(0, part)
            have += len(part)
        if not parts:
            return pd.DataFrame()
        frame = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
        return frame.iloc[-want:].reset_index(drop=True)

    def flush(self) -> None:
        """Write the rows added since the last flush as a new segment, then forget them."""
        if not self._unflushed:
            return
        frame = pd.DataFrame.from_records(self._unflushed)
        self._segments.append(self._write(frame))
        self._unflushed = []
        self._prune()

    def _write(self, frame: pd.DataFrame) -> Segment:
        first, last = int(frame["__index"].iloc[0]), int(frame["__index"].iloc[-1])
        path = self.root / f"{first:012d}.parquet"
        tmp = path.with_suffix(".tmp")
        frame.to_parquet(tmp, index=False)
        tmp.replace(path)
        return Segment(path, first, last, len(frame))

    def _prune(self) -> None:
        total = sum(s.rows for s in self._segments)
        while len(self._segments) > 1 and total - self._segments[0].rows >= self.max_rows:
            total -= self._segments[0].rows
            self._segments.pop(0).path.unlink(missing_ok=True)
        if len(self._segments) > MAX_SEGMENTS:
            half = self._segments[: MAX_SEGMENTS // 2]
            merged = self._write(pd.concat([pd.read_parquet(s.path) for s in half], ignore_index=True))
            for s in half:
                if s.path != merged.path:
                    s.path.unlink(missing_ok=True)
            self._segments = [merged, *self._segments[MAX_SEGMENTS // 2 :]]

    def _load(self, upto: int | None) -> None:
        for tmp in self.root.glob("*.tmp"):
            tmp.unlink()
        for path in sorted(self.root.glob("*.parquet")):
            first = int(path.stem)
            if upto is not None and first > upto:
                path.unlink()  # written after the last checkpoint: the source replays these rows
                continue
            index = pq.read_table(path, columns=["__index"]).column("__index").to_numpy()
            if upto is not None and index[-1] > upto:
                frame = pd.read_parquet(path)
                frame = frame[frame["__index"] <= upto]
                frame.to_parquet(path, index=False)
                index = frame["__index"].to_numpy()
            if len(index):
                self._segments.append(Segment(path, int(index[0]), int(index[-1]), len(index)))
            else:
                path.unlink()
        self._prune()
