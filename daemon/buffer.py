"""The recent labeled events of one model, kept for retraining: in memory, and on disk as Parquet segments.

Rows arrive through :meth:`add`; :meth:`flush` writes the rows added since the last flush as one
segment file (before the store's checkpoint transaction). On restart, rows past the index the
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

from collections import deque
from pathlib import Path
from typing import Any

import pandas as pd

from daemon.join import Joined

DEFAULT_MAX_ROWS = 50_000
"""Labeled rows kept per model unless a retrain action asks for more."""

MAX_SEGMENTS = 64
"""Segments before they are compacted into one, so a restart reads few files."""


class LabeledBuffer:
    def __init__(self, root: str | Path, max_rows: int = DEFAULT_MAX_ROWS, upto: int | None = None) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_rows = max_rows
        self._rows: deque[dict[str, Any]] = deque(maxlen=max_rows)
        self._unflushed: list[dict[str, Any]] = []
        self._load(upto)

    def __len__(self) -> int:
        return len(self._rows)

    @property
    def last_index(self) -> int:
        return self._rows[-1]["__index"] if self._rows else -1

    def add(self, row: Joined) -> None:
        record = {**row.features, "__label": row.label, "__prediction": row.prediction,
                  "__id": row.id, "__ts": row.ts, "__index": row.index}
        for k, v in row.attributes.items():
            record[f"__attr_{k}"] = v
        self._rows.append(record)
        self._unflushed.append(record)

    def frame(self, upto: int | None = None, last: int | None = None) -> pd.DataFrame:
        """The buffered rows (with index <= ``upto``), the most recent ``last`` of them, oldest first."""
        rows = [r for r in self._rows if upto is None or r["__index"] <= upto]
        if last is not None:
            rows = rows[-last:]
        return pd.DataFrame.from_records(rows)

    def flush(self) -> None:
        """Write the rows added since the last flush as a new segment."""
        if not self._unflushed:
            return
        first = self._unflushed[0]["__index"]
        path = self.root / f"{first:012d}.parquet"
        tmp = path.with_suffix(".tmp")
        pd.DataFrame.from_records(self._unflushed).to_parquet(tmp, index=False)
        tmp.replace(path)
        self._unflushed = []
        self._prune()

    def _segments(self) -> list[Path]:
        return sorted(self.root.glob("*.parquet"))

    def _prune(self) -> None:
        segments = self._segments()
        if not self._rows:
            return
        oldest_kept = self._rows[0]["__index"]
        for seg, nxt in zip(segments, segments[1:], strict=False):
            if int(nxt.stem) <= oldest_kept:
                seg.unlink(missing_ok=True)
        if len(self._segments()) > MAX_SEGMENTS:
            self._compact()

    def _compact(self) -> None:
        frame = pd.DataFrame.from_records(list(self._rows))
        first = int(frame["__index"].iloc[0])
        path = self.root / f"{first:012d}.parquet"
        tmp = self.root / "compact.tmp"
        frame.to_parquet(tmp, index=False)
        old = self._segments()
        tmp.replace(path)
        for seg in old:
            if seg != path:
                seg.unlink(missing_ok=True)

    def _load(self, upto: int | None) -> None:
        for seg in self._segments():
            if upto is not None and int(seg.stem) > upto:
                seg.unlink()  # written after the last checkpoint: the source replays these rows
                continue
            frame = pd.read_parquet(seg)
            if upto is not None and (frame["__index"] > upto).any():
                frame = frame[frame["__index"] <= upto]
                frame.to_parquet(seg, index=False)
            self._rows.extend(frame.to_dict("records"))
