"""Decode a whole micro-batch into per-model event columns: the fast path of
:func:`driftwarden.daemon.io.events.decode`.

orjson parses every record (one C-level ``map``); each wire field is then pulled out as a column
and checked once per batch by the set of its value types, not by a Python test per event. A batch
the fast path cannot take whole — a record that is not JSON or breaks the wire contract, an
ISO time that does not parse, a score given as a class map — is decoded by the per-record path
instead, so dead letters and their reasons are exactly that path's. Both give the same events.

>>> from driftwarden.daemon.io.sources import Record
>>> ok = [Record(b'{"model": "m", "id": 7, "ts": 5, "features": {"x": 1}, "prediction": 1}', "p", 0),
...       Record(b'{"model": "n", "id": "a", "label": 0}', "p", 1)]
>>> out = decode_batch(ok, first_index=10, arrival=0.0)
>>> out.fast, out.events, [(m, r.index, r.ids, r.ts) for m, r in out.by_model.items()]
(True, 2, [('m', [10], ['7'], [5.0]), ('n', [11], ['a'], [0.0])])
>>> bad = decode_batch([*ok, Record(b'{oops', "p", 2)], first_index=10, arrival=0.0)
>>> bad.fast, bad.events, [(d.index, d.reason[:8]) for d in bad.dead]
(False, 2, [(12, 'not JSON')])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import chain, repeat
from operator import attrgetter, is_not, itemgetter
from typing import Any

import numpy as np
import orjson
from driftwarden.daemon.io.events import SCALAR_TYPES, DeadLetter, Event, EventRows, decode
from driftwarden.daemon.io.sources import Record
from driftwarden.daemon.io.timestamps import parse_ts
from driftwarden.daemon.io.watermark import TimeGuard, epoch_column
from driftwarden.policies.names import valid_model_names

_NONE = type(None)
_DICT_OR_NONE = frozenset({dict, _NONE})
_NUMBER_OR_NONE = frozenset({float, int, _NONE})
_ID_TYPES = frozenset({str, int})
_RECORD_TS = attrgetter("ts")
_RECORD_VALUE = attrgetter("value")
_BRACE = ord("{")


@dataclass(slots=True)
class Decoded:
    """A decoded batch: each model's events as columns (in order of first appearance), the dead
    letters, the number of events, and whether the fast path took the batch."""

    by_model: dict[str, EventRows] = field(default_factory=dict)
    dead: list[DeadLetter] = field(default_factory=list)
    events: int = 0
    fast: bool = True


class _Fallback(Exception):
    """The batch needs the per-record path."""


def decode_batch(
    records: Sequence[Record],
    first_index: int,
    arrival: float,
    *,
    fast: bool = True,
    max_bytes: int | None = None,
    guard: TimeGuard | None = None,
) -> Decoded:
    """Record ``i`` becomes event index ``first_index + i`` (the same numbering as :func:`decode`).
    ``max_bytes`` and ``guard`` as for :func:`decode`. ``fast=False`` forces the per-record path
    (tests compare the two)."""
    if fast and records:
        try:
            return _fast(records, first_index, arrival, max_bytes, guard)
        except _Fallback:
            pass
    events, dead = decode(records, first_index=first_index, arrival=arrival, max_bytes=max_bytes, guard=guard)
    return Decoded(_group(events), dead, len(events), fast=False)


def _group(events: list[Event]) -> dict[str, EventRows]:
    by_model: dict[str, list[Event]] = {}
    for e in events:
        by_model.setdefault(e.model, []).append(e)
    return {m: EventRows.from_events(m, evs) for m, evs in by_model.items()}


def _fast(
    records: Sequence[Record], first_index: int, arrival: float, max_bytes: int | None, guard: TimeGuard | None
) -> Decoded:
    n = len(records)
    values = list(map(_RECORD_VALUE, records))
    if max_bytes is not None and max(map(len, values)) > max_bytes:
        raise _Fallback
    try:
        objs = list(map(orjson.loads, values))
    except orjson.JSONDecodeError:
        raise _Fallback from None
    if set(map(type, objs)) != {dict}:
        raise _Fallback
    raw = b"".join(values)
    column = _Columns(objs, raw)
    models = column("model")
    if models is None or set(map(type, models)) != {str}:
        raise _Fallback  # a model missing or not a string: a dead letter
    distinct: dict[str, None] = dict.fromkeys(models)
    if not valid_model_names(distinct):
        raise _Fallback  # an empty or unusable name: a dead letter
    ids = _ids(column("id"))
    given_ts = column("ts")
    ts_types = {_NONE} if given_ts is None else set(map(type, given_ts))
    ts = _times(given_ts, ts_types, records, arrival)
    given_features, given_attributes = column("features"), column("attributes")
    flat = _flat(raw, n, given_features, given_attributes)
    features, attributes = _mapping(given_features, flat, n), _mapping(given_attributes, flat, n)
    prediction, score, label = _scalars(column("prediction")), _scores(column("score")), _scalars(column("label"))
    is_prediction = np.fromiter(map(bool, features), bool, n)
    for given in (prediction, score):
        if given is not None and not is_prediction.all():
            is_prediction |= _present(given, n)
    if not is_prediction.all() and (label is None or not (is_prediction | _present(label, n)).all()):
        raise _Fallback  # an event with neither features, prediction, score nor label: a dead letter
    if _NONE not in ts_types:
        ts = _admit(ts, None, records, guard)
    elif given_ts is not None and len(ts_types) > 1:  # some carry a ts (given_ts is a column then)
        ts = _admit(ts, list(map(is_not, given_ts, repeat(None))), records, guard)
    index = list(range(first_index, first_index + n))
    kinds = is_prediction.tolist()
    # Each column, and whether it came from the records: one absent from every record holds the same
    # value (None, or an empty mapping) for all, so that any slice of it is a model's.
    columns: list[tuple[list[Any], bool]] = [
        (index, True),
        (ts, True),
        (kinds, True),
        (ids, True),
        (features, given_features is not None),
        (attributes, given_attributes is not None),
        *(([None] * n, False) if c is None else (c, True) for c in (prediction, score, label)),
    ]
    if len(distinct) == 1:
        (model,) = distinct
        return Decoded({model: EventRows(model, *(c for c, _ in columns))}, [], n)
    # The columns that differ in model order once (in C), then each model's rows are slices of them.
    code_of = {m: i for i, m in enumerate(distinct)}
    codes = np.fromiter(map(code_of.__getitem__, models), np.intp, n)
    in_model_order = itemgetter(*np.argsort(codes, kind="stable").tolist())  # n > 1 positions: a tuple
    ends = np.cumsum(np.bincount(codes, minlength=len(distinct))).tolist()
    grouped: list[list[Any]] = [list(in_model_order(c)) if differs else c for c, differs in columns]
    g_index, g_ts, g_kinds, g_ids, g_features, g_attributes, g_prediction, g_score, g_label = grouped
    by_model: dict[str, EventRows] = {}
    start = 0
    for model, end in zip(distinct, ends, strict=True):  # the slices one by one: a generator per model costs more
        by_model[model] = EventRows(
            model,
            g_index[start:end],
            g_ts[start:end],
            g_kinds[start:end],
            g_ids[start:end],
            g_features[start:end],
            g_attributes[start:end],
            g_prediction[start:end],
            g_score[start:end],
            g_label[start:end],
        )
        start = end
    return Decoded(by_model, [], n)


class _Columns:
    """A wire field's values per record, or None when no record has the field. Without a backslash in the
    records' bytes every key is spelled out, so a field whose quoted name is not in the bytes is in no
    record: one search in C instead of a lookup per record."""

    def __init__(self, objs: list[dict[str, Any]], raw: bytes) -> None:
        self.objs, self.raw, self.spelled = objs, raw, b"\\" not in raw

    def has(self, name: str) -> bool:
        """Whether some record may have the field ``name`` (True when the bytes cannot tell)."""
        return not self.spelled or b'"%s"' % name.encode() in self.raw

    def __call__(self, name: str) -> list[Any] | None:
        if not self.has(name):
            return None
        return list(map(dict.get, self.objs, repeat(name)))


def _ids(values: list[Any] | None) -> list[str]:
    if values is None:
        raise _Fallback  # no record has an id: dead letters
    types = set(map(type, values))
    if types == {str}:
        return values
    if not types <= _ID_TYPES:
        raise _Fallback  # missing, or neither a string nor an integer
    return [v if type(v) is str else str(v) for v in values]


def _times(values: list[Any] | None, types: set[type], records: Sequence[Record], arrival: float) -> list[float]:
    """Epoch seconds per event: numbers through :func:`~driftwarden.daemon.io.watermark.epoch_column` in C;
    an event without a ``ts`` gets its record's time, else ``arrival``."""
    if values is not None and types <= {float, int}:
        given = np.fromiter(values, np.float64, len(values))
        column = epoch_column(given)
        if column is None:
            raise _Fallback  # a number no unit fits: a dead letter
        if column is given and types == {float}:
            return values  # all in seconds already (the usual case): no copy
        return column.tolist()
    if not types <= {float, int, str, _NONE}:
        raise _Fallback
    if values is None:
        broker = list(map(_RECORD_TS, records))
        if broker.count(None) == len(broker):
            return [arrival] * len(broker)
        return [arrival if b is None else b for b in broker]
    try:
        return [
            parse_ts(v) if v is not None else (r.ts if r.ts is not None else arrival)
            for v, r in zip(values, records, strict=True)
        ]
    except ValueError:
        raise _Fallback from None


def _admit(ts: list[float], own: list[bool] | None, records: Sequence[Record], guard: TimeGuard | None) -> list[float]:
    """The times, once the guard admits those the events carry (``own``: which do, None: all; else the
    per-record path names the refused)."""
    if guard is None:
        return ts
    times = np.fromiter(ts, np.float64, len(ts))
    broker = list(map(_RECORD_TS, records))
    if own is not None:
        pick = [i for i, o in enumerate(own) if o]
        times, broker = times[pick], [broker[i] for i in pick]
    if not guard.admit_all(times, None if broker.count(None) == len(broker) else broker):
        raise _Fallback
    return ts


def _flat(raw: bytes, n: int, *mappings: list[Any] | None) -> bool:
    """Whether the ``n`` raw records hold no object or array besides the records themselves and their
    ``mappings`` (the values of ``features`` and ``attributes`` that are not None): then no value inside
    those is nested, and nothing needs a check per value. Counted on the bytes in C; a brace inside a
    string only makes it answer False (the exact check then runs). (numpy counts ~5x faster than ``bytes.count``.)"""
    objects = n + sum(len(m) - m.count(None) for m in mappings if m is not None)
    return b"[" not in raw and int(np.count_nonzero(np.frombuffer(raw, np.uint8) == _BRACE)) == objects


def _mapping(values: list[Any] | None, flat: bool, n: int) -> list[dict[str, Any]]:
    """Each event's mapping (an empty one where it has none); :class:`_Fallback` for one that is not a
    mapping of scalars."""
    if values is None:
        return [{} for _ in range(n)]
    types = set(map(type, values))
    if not types <= _DICT_OR_NONE:
        raise _Fallback
    if _NONE in types:
        values = [{} if v is None else v for v in values]
    if not flat and not set(map(type, chain.from_iterable(map(dict.values, values)))) <= SCALAR_TYPES:
        raise _Fallback  # a nested value: the per-record path names the field
    return values


def _scalars(values: list[Any] | None) -> list[Any] | None:
    if values is not None and not set(map(type, values)) <= SCALAR_TYPES:
        raise _Fallback
    return values


def _present(values: list[Any], n: int) -> np.ndarray:
    return np.fromiter(map(is_not, values, repeat(None)), bool, n)


def _scores(values: list[Any] | None) -> list[float | None] | None:
    if values is None:
        return None
    types = set(map(type, values))
    if types <= {float, _NONE}:
        return values
    if not types <= _NUMBER_OR_NONE:
        raise _Fallback  # a class→probability map or a boolean
    return [float(v) if type(v) is int else v for v in values]
