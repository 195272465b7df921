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

from collections.abc import Sequence, Set
from dataclasses import dataclass, field
from itertools import chain, repeat
from operator import attrgetter, is_not
from typing import Any

import numpy as np
import orjson
from driftwarden.daemon.io.events import SCALAR_TYPES, DeadLetter, Event, EventRows, decode
from driftwarden.daemon.io.sources import Record
from driftwarden.daemon.io.timestamps import parse_ts
from driftwarden.daemon.io.watermark import TimeGuard, epoch_column
from driftwarden.policies.names import valid_model_name

_NONE = type(None)
_DICT_OR_NONE = frozenset({dict, _NONE})
_NUMBER_OR_NONE = frozenset({float, int, _NONE})
_ID_TYPES = frozenset({str, int})
_FIELDS = ("model", "id", "ts", "features", "attributes", "prediction", "score", "label")
_RECORD_TS = attrgetter("ts")


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
    values = [r.value for r in records]
    if max_bytes is not None and max(map(len, values)) > max_bytes:
        raise _Fallback
    try:
        objs = list(map(orjson.loads, values))
    except orjson.JSONDecodeError:
        raise _Fallback from None
    if set(map(type, objs)) != {dict}:
        raise _Fallback
    get = dict.get
    fields: list[list[Any]] = [list(map(get, objs, repeat(f))) for f in _FIELDS]
    models, ids, ts, features, attributes, prediction, score, label = fields
    _require(models, {str})
    distinct: dict[str, None] = dict.fromkeys(models)
    if not all(map(valid_model_name, distinct)):
        raise _Fallback  # an empty or unusable name: a dead letter
    ids = _ids(ids)
    own = _own_times(ts)
    ts = _times(ts, records, arrival)
    has_features = list(map(bool, features))
    flat = _flat(values, len(features) - features.count(None) + len(attributes) - attributes.count(None))
    features = _mapping(features, flat)
    attributes = _mapping(attributes, flat)
    _require(prediction, SCALAR_TYPES)
    _require(label, SCALAR_TYPES)
    score = _scores(score)
    is_prediction = np.fromiter(map(is_not, prediction, repeat(None)), bool, n)
    is_prediction |= np.fromiter(has_features, bool, n)
    is_prediction |= np.fromiter(map(is_not, score, repeat(None)), bool, n)
    if not is_prediction.all() and not (is_prediction | np.fromiter(map(is_not, label, repeat(None)), bool, n)).all():
        raise _Fallback  # an event with neither features, prediction, score nor label: a dead letter
    if own is not None:
        ts = _admit(ts, own, records, guard)
    index = list(range(first_index, first_index + n))
    kinds = is_prediction.tolist()
    columns: tuple[list[Any], ...] = (index, ts, kinds, ids, features, attributes, prediction, score, label)
    if len(distinct) == 1:
        (model,) = distinct
        return Decoded({model: EventRows(model, *columns)}, [], n)
    # Each column in model order once (in C), then each model's rows are slices of it.
    code_of = {m: i for i, m in enumerate(distinct)}
    codes = np.fromiter(map(code_of.__getitem__, models), np.intp, n)
    order = np.argsort(codes, kind="stable").tolist()
    ends = np.cumsum(np.bincount(codes, minlength=len(distinct))).tolist()
    g_index, g_ts, g_kinds, g_ids, g_features, g_attributes, g_prediction, g_score, g_label = (
        list(map(col.__getitem__, order)) for col in columns
    )
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


def _require(values: list[Any], allowed: Set[Any]) -> None:
    if not set(map(type, values)) <= allowed:
        raise _Fallback


def _ids(values: list[Any]) -> list[str]:
    types = set(map(type, values))
    if types == {str}:
        return values
    if not types <= _ID_TYPES:
        raise _Fallback  # missing, or neither a string nor an integer
    return [v if type(v) is str else str(v) for v in values]


def _own_times(values: list[Any]) -> list[bool] | None:
    """Which events carry a ``ts`` of their own (None: all do not)."""
    if _NONE not in set(map(type, values)):
        return [True] * len(values)
    own = [v is not None for v in values]
    return own if any(own) else None


def _times(values: list[Any], records: Sequence[Record], arrival: float) -> list[float]:
    """Epoch seconds per event: numbers through :func:`~driftwarden.daemon.io.watermark.epoch_column` in C."""
    types = set(map(type, values))
    if types <= {float, int}:
        given = np.fromiter(values, np.float64, len(values))
        column = epoch_column(given)
        if column is None:
            raise _Fallback  # a number no unit fits: a dead letter
        if column is given and types == {float}:
            return values  # all in seconds already (the usual case): no copy
        return column.tolist()
    if not types <= {float, int, str, _NONE}:
        raise _Fallback
    try:
        return [
            parse_ts(v) if v is not None else (r.ts if r.ts is not None else arrival)
            for v, r in zip(values, records, strict=True)
        ]
    except ValueError:
        raise _Fallback from None


def _admit(ts: list[float], own: list[bool], records: Sequence[Record], guard: TimeGuard | None) -> list[float]:
    """The times, once the guard admits every one of them (else the per-record path names the refused)."""
    if guard is None:
        return ts
    times = np.fromiter(ts, np.float64, len(ts))
    broker = list(map(_RECORD_TS, records))
    if not all(own):
        pick = [i for i, o in enumerate(own) if o]
        times, broker = times[pick], [broker[i] for i in pick]
    if not guard.admit_all(times, None if broker.count(None) == len(broker) else broker):
        raise _Fallback
    return ts


def _flat(values: list[bytes], mappings: int) -> bool:
    """Whether the raw records hold no object or array besides the records themselves and
    ``mappings`` more (their ``features`` and ``attributes``): then no value inside those is
    nested, and nothing needs a check per value. Counted on the bytes in C; a brace inside a
    string only makes it answer False (the exact check then runs)."""
    raw = b"".join(values)
    return raw.count(b"{") == len(values) + mappings and b"[" not in raw


def _mapping(values: list[Any], flat: bool) -> list[dict[str, Any]]:
    types = set(map(type, values))
    if not types <= _DICT_OR_NONE:
        raise _Fallback
    if _NONE in types:
        values = [{} if v is None else v for v in values]
    if not flat and not set(map(type, chain.from_iterable(map(dict.values, values)))) <= SCALAR_TYPES:
        raise _Fallback  # a nested value: the per-record path names the field
    return values


def _scores(values: list[Any]) -> list[float | None]:
    types = set(map(type, values))
    if types <= {float, _NONE}:
        return values
    if not types <= _NUMBER_OR_NONE:
        raise _Fallback  # a class→probability map or a boolean
    return [float(v) if type(v) is int else v for v in values]
