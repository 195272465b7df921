"""Tumbling windows over column batches, by event count or by event time.

>>> from driftwarden.detectors.base import Batch, Part
>>> w = Windower(events=3)
>>> done = w.add(Batch.of(index=range(7), features={"x": [0., 1., 2., 3., 4., 5., 6.]}))
>>> [(x.start, x.end, x.at, x.columns["x"].tolist()) for x in done]
[(0, 3, 2, [0.0, 1.0, 2.0]), (3, 6, 5, [3.0, 4.0, 5.0])]
>>> w.pending
1
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from driftwarden.detectors.base import Batch, Part

Columns = dict[str, np.ndarray]

MAX_CHUNKS = 64
"""Pending chunks of a window before they are merged into one."""
SETTLED_ROWS = 64
"""A chunk of this many rows is not merged into at a snapshot: only tiny chunks (a checkpoint per few events
of a model) merge; encoding 100-row chunks again cost the 100-model bench a fifth of its rate (chunks
restored from the store are read lazily, so their number costs a restart little)."""

_ENCODED = "chunks"
"""Snapshot key of the open window's chunks, each encoded once (earlier snapshots held one ``index``)."""


@dataclass(frozen=True, slots=True)
class Window:
    """A closed window: rows of event indices ``start`` .. ``end`` (exclusive), closed by event ``at``."""

    start: int
    end: int
    at: int
    ts: float
    columns: Columns

    def __len__(self) -> int:
        first = next(iter(self.columns.values()), None)
        return 0 if first is None else len(first)


class Windower:
    """Collects rows into tumbling windows of ``events`` rows or ``seconds`` of event time.

    A time window ``[t0 + k*seconds, t0 + (k+1)*seconds)`` closes when the first row at or past
    its end arrives; that row is the window's ``at`` and opens the next window. Memory is bounded
    by one window of the selected columns.
    """

    def __init__(self, events: int | None = None, seconds: float | None = None) -> None:
        if (events is None) == (seconds is None):
            raise ValueError("give exactly one of events=N or seconds=S for a window")
        if events is not None and events < 1:
            raise ValueError(f"window events must be >= 1, got {events}")
        if seconds is not None and not seconds > 0:
            raise ValueError(f"window seconds must be > 0, got {seconds}")
        self.events = events
        self.seconds = seconds
        self._chunks: list[Columns | None] = []
        self._index: list[np.ndarray | None] = []
        self._ts: list[np.ndarray | None] = []
        """A chunk's rows; None for a chunk restored but not read yet (its Part holds them)."""
        self._rows: list[int] = []
        self._encoded: list[Part | None] = []
        """Each chunk's snapshot, made once: a checkpoint costs the rows added since the last one."""
        self._pending = 0
        self._window_start_ts: float | None = None

    @property
    def pending(self) -> int:
        """Rows collected for the open window."""
        return self._pending

    def add(self, batch: Batch, select: Callable[[Batch], Columns] | None = None) -> list[Window]:
        """Add a batch; return the windows it closed. ``select`` picks the columns to keep (default: features)."""
        if len(batch) == 0:
            return []
        cols = select(batch) if select else dict(batch.features)
        if self.events is not None:
            return self._add_by_count(batch.index, batch.ts, cols)
        return self._add_by_time(batch.index, batch.ts, cols)

    def _add_by_count(self, index: np.ndarray, ts: np.ndarray, cols: Columns) -> list[Window]:
        assert self.events is not None
        out: list[Window] = []
        pos = 0
        while pos < len(index):
            take = min(self.events - self.pending, len(index) - pos)
            self._push(index[pos : pos + take], ts[pos : pos + take], {k: v[pos : pos + take] for k, v in cols.items()})
            pos += take
            if self.pending == self.events:
                idx, t, c = self._drain()
                out.append(Window(int(idx[0]), int(idx[-1]) + 1, int(idx[-1]), float(t[-1]), c))
        return out

    def _add_by_time(self, index: np.ndarray, ts: np.ndarray, cols: Columns) -> list[Window]:
        assert self.seconds is not None
        out: list[Window] = []
        pos = 0
        if self._window_start_ts is None:
            self._window_start_ts = float(ts[0])
        opened = False  # the row at ``pos`` just opened the window: it belongs to it, whatever the float sums say
        while pos < len(index):
            end_ts = self._window_start_ts + self.seconds
            rest = ts[pos:]
            past = np.flatnonzero(rest >= end_ts)
            cut = pos + (int(past[0]) if len(past) else len(rest))
            if opened and cut == pos:
                # At 1e300 (or epoch nanoseconds with a short window) start + seconds == start in
                # floating point: without this the loop would never consume the row (a spin).
                cut = pos + 1
            if cut > pos:
                self._push(index[pos:cut], ts[pos:cut], {k: v[pos:cut] for k, v in cols.items()})
            if cut == len(index):
                break
            closer = cut
            if self.pending:
                idx, _, c = self._drain()
                out.append(Window(int(idx[0]), int(idx[-1]) + 1, int(index[closer]), float(ts[closer]), c))
            skipped = (float(ts[closer]) - self._window_start_ts) // self.seconds  # a float: no overflow at inf
            start = self._window_start_ts + skipped * self.seconds
            # A non-finite or imprecise start (a ts near the float limit) restarts the grid at the row itself.
            fits = math.isfinite(start) and start + self.seconds > ts[closer]
            self._window_start_ts = start if fits else float(ts[closer])
            pos = cut
            opened = True
        return out

    def _push(self, index: np.ndarray, ts: np.ndarray, cols: Columns) -> None:
        self._pending += len(index)
        self._index.append(index)
        self._ts.append(ts)
        self._chunks.append(cols)
        self._rows.append(len(index))
        self._encoded.append(None)
        if len(self._chunks) >= MAX_CHUNKS:  # many small batches: merge them, an array costs ~100 bytes
            self._push(*self._drain())

    def _drain(self) -> tuple[np.ndarray, np.ndarray, Columns]:
        """The open window's rows as new arrays (copies: a closed window never holds a view of a batch)."""
        idx, t, cols = self._joined(0, len(self._rows))
        self._chunks, self._index, self._ts, self._rows, self._encoded = [], [], [], [], []
        self._pending = 0
        return idx, t, cols

    def _joined(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray, Columns]:
        """Chunks ``start`` .. ``stop`` as one, those restored but not read yet read first."""
        for i in range(start, stop):
            if self._chunks[i] is None:
                self._read(i)
        return _joined(self._index[start:stop], self._ts[start:stop], self._chunks[start:stop])  # type: ignore[arg-type]

    def _read(self, i: int) -> None:
        """Decode restored chunk ``i`` from its Part; ValueError when it does not hold the rows its state says."""
        c = Part.content(self._encoded[i])
        index = decode(c["index"])
        if len(index) != self._rows[i]:
            raise ValueError(f"a window chunk holds {len(index)} rows, its state says {self._rows[i]}")
        self._index[i], self._ts[i] = index, decode(c["ts"])
        self._chunks[i] = {k: decode(v) for k, v in c["columns"].items()}

    def snapshot(self) -> dict[str, Any]:
        """The open window as its chunks; a chunk is encoded at its first snapshot only (chunks never
        change until the window closes, or merge). The chunks new since the last snapshot become one;
        an older chunk at least as long as the one before it merges into it (encoded again) while that
        one is shorter than :data:`SETTLED_ROWS`, so small snapshots of an open window leave a few
        chunks of falling length (about log2 of their count), not one each: a restart decodes a few
        arrays per column, and a row is encoded a few times at most.

        >>> w = Windower(events=10)
        >>> _ = w.add(Batch.of(index=range(3), features={"x": [0., 1., 2.]}))
        >>> first = w.snapshot()["chunks"][0]; Part.content(first)["ts"]["values"]
        [0.0, 1.0, 2.0]
        >>> _ = w.add(Batch.of(index=range(3, 6), features={"x": [3., 4., 5.]}))
        >>> later = w.snapshot()["chunks"]; (len(later), later[0] is first)
        (2, True)
        >>> _ = w.add(Batch.of(index=range(6, 7), features={"x": [6.]}))
        >>> [Part.content(c)["index"]["values"] for c in w.snapshot()["chunks"]]
        [[0, 1, 2, 3, 4, 5], [6]]
        >>> v = Windower(events=10); v.restore(w.snapshot()); v.pending
        7
        """
        self._settle()
        encoded = self._encoded
        for i, chunk in enumerate(self._chunks):
            if encoded[i] is None:
                index, ts = self._index[i], self._ts[i]
                assert chunk is not None and index is not None and ts is not None  # only restored chunks are unread
                encoded[i] = Part(
                    {
                        "index": _packed(index),
                        "ts": _packed(ts),
                        "columns": {k: _packed(v) for k, v in chunk.items()},
                    }
                )
        return {_ENCODED: list(encoded), "rows": list(self._rows), "window_start_ts": self._window_start_ts}

    def _settle(self) -> None:
        """Merge the chunks not encoded yet into one; before it, merge each encoded chunk into the one
        before it while it is at least as long and that one is shorter than :data:`SETTLED_ROWS`
        (see :meth:`snapshot`)."""
        fresh = next((i for i, e in enumerate(self._encoded) if e is None), len(self._encoded))
        self._merge(fresh, len(self._chunks))
        while fresh > 1 and self._rows[fresh - 1] >= self._rows[fresh - 2] < SETTLED_ROWS:
            self._merge(fresh - 2, fresh)
            fresh -= 1

    def _merge(self, start: int, stop: int) -> None:
        """Chunks ``start`` .. ``stop`` (exclusive) as one, not encoded (a single chunk stays as it is)."""
        if stop - start < 2:
            return
        idx, ts, cols = self._joined(start, stop)
        self._index[start:stop], self._ts[start:stop], self._chunks[start:stop] = [idx], [ts], [cols]
        self._rows[start:stop], self._encoded[start:stop] = [len(idx)], [None]

    def restore(self, state: Mapping[str, Any]) -> None:
        """Resume from :meth:`snapshot` output. Chunks given as Parts with their row counts (what the
        store gives back) are read when the window needs their rows, not now: a restart of a thousand
        models does not decode every open window."""
        self._chunks, self._index, self._ts, self._rows, self._encoded = [], [], [], [], []
        self._pending = 0
        self._window_start_ts = state.get("window_start_ts")
        chunks = state.get(_ENCODED)
        if chunks is None:  # a snapshot of an earlier version: the open window as one chunk, or none
            chunks = [state] if state.get("index") is not None else []
        rows = state.get("rows")
        if (
            isinstance(rows, list)
            and len(rows) == len(chunks) < MAX_CHUNKS
            and all(isinstance(p, Part) for p in chunks)
            and all(type(n) is int and n > 0 for n in rows)
        ):
            for part, n in zip(chunks, rows, strict=True):
                self._chunks.append(None)
                self._index.append(None)
                self._ts.append(None)
                self._rows.append(n)
                self._encoded.append(part)
                self._pending += n
            return
        for part in chunks:
            c = Part.content(part)
            self._push(decode(c["index"]), decode(c["ts"]), {k: decode(v) for k, v in c["columns"].items()})
            if _ENCODED in state:
                self._encoded[-1] = part if isinstance(part, Part) else Part(c)


def _joined(
    index: list[np.ndarray], ts: list[np.ndarray], chunks: list[Columns]
) -> tuple[np.ndarray, np.ndarray, Columns]:
    """Chunks as one: their index, ts and columns concatenated (a column a chunk lacks: missing there)."""
    names: dict[str, np.dtype] = {}
    for c in chunks:
        for n, v in c.items():
            names.setdefault(n, v.dtype)
    cols = {
        n: np.concatenate([c[n] if n in c else _missing(dtype, len(i)) for c, i in zip(chunks, index, strict=True)])
        for n, dtype in names.items()
    }
    return np.concatenate(index), np.concatenate(ts), cols


def _missing(dtype: np.dtype, n: int) -> np.ndarray:
    """A column absent from a batch: all missing (NaN, or None for categories)."""
    if dtype.kind in "fiub":
        return np.full(n, np.nan)
    return np.full(n, None, dtype=object)


def _packed(a: np.ndarray) -> dict[str, Any]:
    """:func:`encode`'s JSON for a :class:`Part` (which serializes numpy arrays in C): a finite numeric
    array stays an array, written as the same list of numbers."""
    if a.dtype.kind in "iub" or (a.dtype.kind == "f" and np.isfinite(a).all()):
        return {"dtype": a.dtype.str, "values": np.ascontiguousarray(a)}
    return encode(a)


def encode(a: np.ndarray) -> dict[str, Any]:
    """A numpy array as plain JSON data: numeric arrays as a list of numbers (``"nan"``, ``"inf"``,
    ``"-inf"`` for floats that are not finite), others as category codes plus the list of
    categories (missing values are code -1). No bytes, nothing pickled.

    >>> encode(np.array([1.5, float("nan")]))
    {'dtype': '<f8', 'values': [1.5, 'nan']}
    >>> decode(encode(np.array([1.5, float("nan")]))).tolist()[0]
    1.5
    >>> encode(np.array(["a", None, "b", "a"], dtype=object))
    {'dtype': 'object', 'codes': [0, -1, 1, 0], 'categories': ['a', 'b']}
    >>> decode(encode(np.array(["a", None, "b", "a"], dtype=object))).tolist()
    ['a', None, 'b', 'a']
    """
    if a.dtype.kind in "fiub":
        values = a.tolist()
        if a.dtype.kind == "f":
            for i in np.flatnonzero(~np.isfinite(a)).tolist():
                values[i] = str(values[i])
        return {"dtype": a.dtype.str, "values": values}
    values = a.tolist()
    code_of: dict[Any, int] = dict.fromkeys(values, -1)  # every distinct value; None and NaN stay -1 (missing)
    categories = [v for v in code_of if v is not None and v == v]  # in order of first appearance
    code_of.update(zip(categories, range(len(categories)), strict=True))
    return {
        "dtype": "object",
        "codes": [code_of[v] for v in values],
        "categories": [to_jsonable(v) for v in categories],
    }


def _codes(d: Mapping[str, Any]) -> np.ndarray:
    if isinstance(d["codes"], str):  # snapshots before plain data: little-endian int32 bytes, never unpickled
        return np.frombuffer(base64.b64decode(d["codes"]), dtype="<i4")
    return np.asarray(d["codes"], dtype=np.int64)


def decode(d: Mapping[str, Any]) -> np.ndarray:
    """The array :func:`encode` wrote; ValueError for anything that is not numbers or categories."""
    if d["dtype"] == "object":
        if "items" in d:  # snapshots written before categories were coded
            out = np.empty(len(d["items"]), dtype=object)
            out[:] = d["items"]
            return out
        codes = _codes(d)
        categories = np.empty(len(d["categories"]) + 1, dtype=object)
        categories[:-1] = d["categories"]
        categories[-1] = None
        if len(codes) and (codes.min() < -1 or codes.max() >= len(categories) - 1):
            raise ValueError("a category code in a monitor state is out of range")
        return categories[codes]  # code -1 picks the trailing None
    dtype = np.dtype(d["dtype"])
    if dtype.kind not in "fiub":
        raise ValueError(f"dtype {d['dtype']!r} is not allowed in a monitor state")
    if "b64" in d:  # snapshots before plain data: the raw numbers, read as numbers only
        return np.frombuffer(base64.b64decode(d["b64"]), dtype=dtype).copy()
    return np.array(d["values"], dtype=dtype)


def to_jsonable(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    return v
