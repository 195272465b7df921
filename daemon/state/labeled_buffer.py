"""The recent labeled events of one model, kept on disk for retraining as JSON segments.

Rows arrive through :meth:`extend`, are serialized at once (the rows' dicts die young, while
still in cache, and the bytes take a fifth of their memory) and wait until :meth:`flush` (called
before the store's checkpoint transaction) writes them as one segment, so the buffer's memory is
bounded by one checkpoint interval, whatever ``max_rows`` is. Segments
wholly older than the newest ``max_rows`` rows are deleted. On restart, rows past the index the
checkpoint recorded are dropped, since the source replays them.

A segment holds one orjson document per :meth:`extend` call, a line each, of the rows' columns
(:class:`~driftwarden.daemon.state.label_join.LabeledRows` fields), and is named
``<first index>-<last index>-<rows>.json`` so a restart lists segments without reading them. Writing costs about
0.7 µs per row, a quarter of a Parquet write, and keeps
pyarrow and pandas (75 MB of RSS) out of the daemon: :meth:`frame` builds the DataFrame a retrain
trains on, and pandas loads then.

>>> import tempfile
>>> buf = LabeledBuffer(tempfile.mkdtemp(), max_rows=3)
>>> for i in range(5): buf.extend(LabeledRows.of([(i, float(i), str(i), {"x": float(i)}, {}, 1, None, i % 2)]))
>>> buf.flush(); frame = buf.frame(); list(frame["x"]), list(frame["__label"])
([2.0, 3.0, 4.0], [0, 1, 0])
>>> LabeledBuffer(buf.root, max_rows=3, upto=3).frame()["__index"].tolist()
[1, 2, 3]
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import chain, repeat
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from driftwarden.daemon.io.private import open_private, private_folder
from driftwarden.daemon.state.label_join import LabeledRows
from driftwarden.daemon.state.store import StateCorrupt

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_MAX_ROWS = 50_000
"""Labeled rows kept per model unless a retrain action asks for more."""

MAX_SEGMENTS = 64
"""Segments before the oldest are merged, so a restart or an export reads few files."""

_COLUMNS = ("index", "ts", "ids", "features", "attributes", "prediction", "score", "label")
"""The :class:`LabeledRows` fields a segment stores."""


@dataclass(frozen=True, slots=True)
class Segment:
    path: Path
    first: int
    last: int
    rows: int

    @classmethod
    def parse(cls, path: Path) -> Segment | None:
        try:
            first, last, rows = map(int, path.stem.split("-"))
        except ValueError:
            return None
        return cls(path, first, last, rows)

    def read(self) -> LabeledRows:
        """The segment's rows; a torn or garbled file raises :class:`StateCorrupt` naming it."""
        data = self.path.read_bytes()
        try:
            rows = _parse(data.splitlines())
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise StateCorrupt(str(self.path), f"labeled-data segment does not parse ({e})") from None
        if len(rows) != self.rows or (self.rows and (rows.index[0] != self.first or rows.index[-1] != self.last)):
            raise StateCorrupt(
                str(self.path), f"labeled-data segment holds {len(rows)} rows, its name says {self.rows}"
            )
        return rows

    def torn(self) -> bool:
        """Cheap test at start-up (no parse): empty, or cut short before its last newline."""
        size = self.path.stat().st_size
        if size == 0:
            return self.rows > 0
        with open(self.path, "rb") as f:
            f.seek(size - 1)
            return f.read(1) != b"\n"


def _serialize(rows: LabeledRows) -> bytes:
    return orjson.dumps({c: getattr(rows, c) for c in _COLUMNS}, option=orjson.OPT_SERIALIZE_NUMPY, default=str)


def _parse(docs: list[bytes]) -> LabeledRows:
    parts = [orjson.loads(d) for d in docs if d.strip()]
    return LabeledRows.concat([LabeledRows(*(p[c] for c in _COLUMNS)) for p in parts] or [LabeledRows.of([])])


class LabeledBuffer:
    def __init__(self, root: str | Path, max_rows: int = DEFAULT_MAX_ROWS, upto: int | None = None) -> None:
        self.root = Path(root)
        private_folder(self.root)
        self.max_rows = max_rows
        self._unflushed: list[bytes] = []
        self._unflushed_rows = 0
        self._unflushed_range = (-1, -1)  # first, last index of the unflushed rows
        self._last_index = -1
        self._segments: list[Segment] = []
        self._listed: list[str] | None = None
        self._load(upto)

    def __len__(self) -> int:
        return min(self.max_rows, sum(s.rows for s in self._segments) + self._unflushed_rows)

    @property
    def last_index(self) -> int:
        if self._unflushed:
            return self._last_index
        return self._segments[-1].last if self._segments else -1

    def extend(self, rows: LabeledRows) -> None:
        """Add labeled rows (serialized now, written at the next :meth:`flush`)."""
        if not len(rows):
            return
        self._unflushed.append(_serialize(rows))
        first, last = min(rows.index), max(rows.index)
        if self._unflushed_rows:
            first, last = min(first, self._unflushed_range[0]), max(last, self._unflushed_range[1])
        self._unflushed_range = (first, last)
        self._unflushed_rows += len(rows)
        self._last_index = rows.index[-1]

    def pending_docs(self) -> list[bytes]:
        """The documents added since the last :meth:`flush` (one per :meth:`extend`), as a segment
        holds them: what the Kafka labeled-data log sends before the checkpoint."""
        return list(self._unflushed)

    def adopt(self, docs: list[bytes]) -> int:
        """Write documents another daemon buffered (from the Kafka labeled-data log, oldest first)
        as a segment of this buffer at once; returns the rows they hold. A document that does not
        parse raises :class:`StateCorrupt`."""
        try:
            rows = _parse(docs)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise StateCorrupt(str(self.root), f"a labeled-data document from Kafka does not parse ({e})") from None
        if not len(rows):
            return 0
        self._segments.append(self._write(docs, min(rows.index), max(rows.index), len(rows)))
        self._segments.sort(key=lambda s: s.first)
        self._prune()
        return len(rows)

    def rows(self, upto: int | None = None, last: int | None = None) -> LabeledRows:
        """The newest ``last`` rows (default ``max_rows``) with index <= ``upto``, oldest first."""
        want = min(last or self.max_rows, self.max_rows)
        parts: list[LabeledRows] = []
        pending = _parse(self._unflushed)
        if upto is not None:
            pending = pending.upto(upto)
        have = len(pending)
        parts.append(pending)
        for seg in reversed(self._segments):
            if have >= want:
                break
            if upto is not None and seg.first > upto:
                continue
            part = seg.read()
            if upto is not None and seg.last > upto:
                part = part.upto(upto)
            parts.insert(0, part)
            have += len(part)
        rows = LabeledRows.concat(parts)
        if len(rows) > want:
            rows = LabeledRows(*(getattr(rows, c)[-want:] for c in _COLUMNS))
        return rows

    def frame(self, upto: int | None = None, last: int | None = None) -> pd.DataFrame:
        """:meth:`rows` as a DataFrame: features under their names, then ``__label``, ``__prediction``,
        ``__id``, ``__ts``, ``__index`` and ``__attr_<name>``."""
        return to_frame(self.rows(upto, last))

    def flush(self) -> None:
        """Write the rows added since the last flush as a new segment, then forget them."""
        if not self._unflushed:
            return
        first, last = self._unflushed_range
        self._segments.append(self._write(self._unflushed, first, last, self._unflushed_rows))
        self._unflushed, self._unflushed_rows = [], 0
        self._prune()

    @property
    def model(self) -> str:
        """The model whose rows these are (the folder's name, ``buffers/<model>``)."""
        return self.root.name

    def listing(self) -> list[str] | None:
        """The segment files' names when they changed since the last call, else None: what the
        checkpoint records, so that a segment deleted from outside is found (:func:`missing_segments`)."""
        names = [s.path.name for s in self._segments]
        if names == self._listed:
            return None
        self._listed = names
        return names

    def _write_rows(self, rows: LabeledRows) -> Segment:
        return self._write([_serialize(rows)], min(rows.index), max(rows.index), len(rows))

    def _write(self, docs: list[bytes], first: int, last: int, rows: int) -> Segment:
        path = self.root / f"{first:012d}-{last:012d}-{rows}.json"
        tmp = path.with_suffix(".tmp")
        try:
            with open_private(tmp, "wb") as f:
                f.writelines(chain.from_iterable(zip(docs, repeat(b"\n"))))
        except OSError as e:  # a full disk: no partial file left, and the error names the file
            tmp.unlink(missing_ok=True)
            if e.filename is None:
                raise OSError(e.errno, e.strerror, str(tmp)) from e
            raise
        os.replace(tmp, path)
        return Segment(path, first, last, rows)

    def _prune(self) -> None:
        total = sum(s.rows for s in self._segments)
        while len(self._segments) > 1 and total - self._segments[0].rows >= self.max_rows:
            total -= self._segments[0].rows
            self._segments.pop(0).path.unlink(missing_ok=True)
        if len(self._segments) > MAX_SEGMENTS:
            half = self._segments[: MAX_SEGMENTS // 2]
            merged = self._write_rows(LabeledRows.concat([s.read() for s in half]))
            for s in half:
                if s.path != merged.path:
                    s.path.unlink(missing_ok=True)
            self._segments = [merged, *self._segments[MAX_SEGMENTS // 2 :]]

    def _load(self, upto: int | None) -> None:
        names = os.listdir(self.root)  # one listing (a thousand models' folders are read at every start)
        for name in names:
            if name.endswith(".tmp"):
                (self.root / name).unlink()
        legacies = sorted(n for n in names if n.endswith(".parquet"))  # segments of earlier versions
        for name in legacies:
            self._write_rows(from_frame(self.root / name))
            (self.root / name).unlink()
        if legacies:
            names = os.listdir(self.root)
        for name in sorted(n for n in names if n.endswith(".json")):
            path = self.root / name
            seg = Segment.parse(path)
            if seg is None:
                continue
            if seg.torn():
                raise StateCorrupt(str(path), "labeled-data segment is torn (cut short)")
            if upto is not None and seg.first > upto:
                path.unlink()  # written after the last checkpoint: the source replays these rows
                continue
            if upto is not None and seg.last > upto:  # straddles the checkpoint: keep its first part
                kept = seg.read().upto(upto)
                path.unlink()
                if not len(kept):
                    continue
                seg = self._write_rows(kept)
            self._segments.append(seg)
        self._segments.sort(key=lambda s: s.first)
        self._prune()


def segment_lists(sinks: Iterable[object]) -> dict[str, list[str]]:
    """Model → its segments' names, of the labeled buffers among ``sinks`` whose segments changed."""
    out = {}
    for sink in sinks:
        if isinstance(sink, LabeledBuffer) and (names := sink.listing()) is not None:
            out[sink.model] = names
    return out


def missing_segments(root: Path, listed: Iterable[str]) -> list[Segment]:
    """The segments a checkpoint listed that are gone from ``root`` (deleted from outside: their rows
    are lost for retraining). A listed segment whose rows a present one holds (merged into it) is not
    missing."""
    try:
        names = set(os.listdir(root))
    except FileNotFoundError:
        names = set()
    present = [s for n in names if n.endswith(".json") and (s := Segment.parse(root / n)) is not None]
    gone = []
    for name in listed:
        seg = Segment.parse(root / name)
        if seg is None or name in names:
            continue
        if any(p.first <= seg.first and seg.last <= p.last for p in present):
            continue
        gone.append(seg)
    return gone


def to_frame(rows: LabeledRows) -> pd.DataFrame:
    """Labeled rows as a DataFrame (see :meth:`LabeledBuffer.frame`). A column holding values of
    mixed types (a type violation upstream) is stored as text, so the training export can write it."""
    import pandas as pd

    frame = pd.DataFrame.from_records(rows.features) if len(rows) else pd.DataFrame()
    for name, values in (
        ("__label", rows.label),
        ("__prediction", rows.prediction),
        ("__id", rows.ids),
        ("__ts", rows.ts),
        ("__index", rows.index),
    ):
        frame[name] = values
    if any(rows.attributes):
        attrs = pd.DataFrame.from_records(rows.attributes)
        for name in attrs.columns:
            frame[f"__attr_{name}"] = attrs[name].to_numpy()
    for col in frame.columns:
        if frame[col].dtype == object:
            kinds = {type(v) for v in frame[col] if v is not None and v == v}
            if len(kinds) > 1:
                frame[col] = frame[col].map(_as_text)
    return frame


def _as_text(v: Any) -> str | None:
    return None if v is None or v != v else v if isinstance(v, str) else str(v)


def from_frame(path: Path) -> LabeledRows:
    """The rows of a Parquet segment that earlier versions wrote (columns as :func:`to_frame` makes)."""
    import pandas as pd

    frame = pd.read_parquet(path)
    meta = ["__label", "__prediction", "__id", "__ts", "__index"]
    attrs = [c for c in frame.columns if c.startswith("__attr_")]
    features = frame.drop(columns=meta + attrs).to_dict("records")
    attributes = frame[attrs].rename(columns=lambda c: c.removeprefix("__attr_")).to_dict("records")
    return LabeledRows(
        frame["__index"].tolist(),
        frame["__ts"].tolist(),
        frame["__id"].tolist(),
        features,
        attributes,
        frame["__prediction"].tolist(),
        [None] * len(frame),
        frame["__label"].tolist(),
    )
