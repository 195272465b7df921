"""Decode wire-format records into events; whatever does not decode or validate becomes a dead letter.

>>> from driftwarden.daemon.io.sources import Record
>>> events, dead = decode([Record(b'{"model": "m", "id": 7, "features": {"x": 1}, "prediction": 1}', "p", 0),
...                        Record(b'{"id": 8}', "p", 1), Record(b'{oops', "p", 2)], first_index=0, arrival=0.0)
>>> [(e.model, e.id, e.index, e.features) for e in events]
[('m', '7', 0, {'x': 1})]
>>> [(d.index, d.reason) for d in dead]
[(1, "missing required field 'model'"),
 (2, 'not JSON: unexpected character, expected a string key: line 1 column 2 (char 1)')]
"""

from __future__ import annotations

import base64
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from itertools import chain, compress
from typing import Any, overload

import orjson
from driftwarden.daemon.io.reasons import REASONS
from driftwarden.daemon.io.sources import Record
from driftwarden.daemon.io.timestamps import parse_ts, short_repr
from driftwarden.daemon.io.watermark import TimeGuard
from driftwarden.policies.names import model_name_problem, valid_model_name

SCALARS = (str, int, float, bool, type(None))
SCALAR_TYPES = frozenset(SCALARS)
"""The types a feature, attribute, prediction or label value may have (a set, for fast checks)."""


@dataclass(slots=True)
class Event:
    """One decoded event. ``kind`` is ``prediction`` (features and/or a prediction, perhaps with its
    label) or ``label`` (a late label for an earlier prediction)."""

    model: str
    id: str
    index: int
    ts: float
    kind: str
    features: dict[str, Any] = field(default_factory=dict)
    attributes: dict[str, Any] = field(default_factory=dict)
    prediction: Any = None
    score: float | None = None
    label: Any = None


EVENT_FIELDS = ("model", "id", "index", "ts", "kind", "features", "attributes", "prediction", "score", "label")
"""An :class:`Event`'s fields in order (its snapshot form: a dict with these keys)."""


_ROW_COLUMNS = ("index", "ts", "is_prediction", "ids", "features", "attributes", "prediction", "score", "label")
"""The list fields of :class:`EventRows`, in order."""


@dataclass(slots=True)
class EventRows:
    """The events of one model in one micro-batch as columns: what decoding produces for the
    pipeline, without an :class:`Event` object per event. ``is_prediction[i]`` is True for kind
    ``prediction``; missing ``features``/``attributes`` are empty dicts. Indexing gives an
    :class:`Event` (a view made on demand, for code that wants one).

    >>> rows = EventRows.from_events("m", [Event("m", "a", 3, 1.0, "prediction", {"x": 1}, prediction=1),
    ...                                    Event("m", "b", 4, 2.0, "label", label=0)])
    >>> len(rows), rows.ids, rows.is_prediction, rows[1].kind, rows.predictions().ids
    (2, ['a', 'b'], [True, False], 'label', ['a'])
    """

    model: str
    index: list[int]
    ts: list[float]
    is_prediction: list[bool]
    ids: list[str]
    features: list[dict[str, Any]]
    attributes: list[dict[str, Any]]
    prediction: list[Any]
    score: list[float | None]
    label: list[Any]

    @classmethod
    def from_events(cls, model: str, events: Sequence[Event]) -> EventRows:
        return cls(
            model,
            [e.index for e in events],
            [e.ts for e in events],
            [e.kind == "prediction" for e in events],
            [e.id for e in events],
            [e.features for e in events],
            [e.attributes for e in events],
            [e.prediction for e in events],
            [e.score for e in events],
            [e.label for e in events],
        )

    def __len__(self) -> int:
        return len(self.index)

    @overload
    def __getitem__(self, i: int) -> Event: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[Event]: ...
    def __getitem__(self, i: int | slice) -> Event | Sequence[Event]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        kind = "prediction" if self.is_prediction[i] else "label"
        return Event(
            self.model,
            self.ids[i],
            self.index[i],
            self.ts[i],
            kind,
            self.features[i],
            self.attributes[i],
            self.prediction[i],
            self.score[i],
            self.label[i],
        )

    def __iter__(self) -> Iterator[Event]:
        return (self[i] for i in range(len(self)))

    @classmethod
    def concat(cls, parts: Sequence[EventRows]) -> EventRows:
        """The rows of ``parts`` (all of one model) one after the other (the only part when one).

        >>> a = EventRows.from_events("m", [Event("m", "a", 3, 1.0, "label")])
        >>> b = EventRows.from_events("m", [Event("m", "b", 7, 2.0, "label")])
        >>> EventRows.concat([a, b]).index, EventRows.concat([a]) is a
        ([3, 7], True)
        """
        if len(parts) == 1:
            return parts[0]
        return cls(parts[0].model, *(list(chain.from_iterable(getattr(p, f) for p in parts)) for f in _ROW_COLUMNS))

    @classmethod
    def empty(cls, model: str) -> EventRows:
        """No rows of ``model`` (to :meth:`extend`)."""
        return cls(model, *([] for _ in _ROW_COLUMNS))

    def extend(self, other: EventRows) -> None:
        """Append ``other``'s rows (of the same model) to these.

        >>> rows = EventRows.empty("m"); rows.extend(EventRows.from_events("m", [Event("m", "a", 3, 1.0, "label")]))
        >>> rows.extend(EventRows.from_events("m", [Event("m", "b", 7, 2.0, "label")])); rows.index, rows.ids
        ([3, 7], ['a', 'b'])
        """
        self.index += other.index  # one statement per column: a loop over getattr costs twice as much
        self.ts += other.ts
        self.is_prediction += other.is_prediction
        self.ids += other.ids
        self.features += other.features
        self.attributes += other.attributes
        self.prediction += other.prediction
        self.score += other.score
        self.label += other.label

    def dumps(self) -> bytes:
        """The rows as JSON (their columns, in :data:`_ROW_COLUMNS` order): what :meth:`loads` reads.
        Decoded values are JSON's own, so the round trip is exact; ValueError for a time that is not
        finite (JSON has no such number).

        >>> rows = EventRows.from_events("m", [Event("m", "a", 3, 1.5, "prediction", {"x": 1, "c": "v"}, prediction=1)])
        >>> EventRows.loads("m", rows.dumps()) == rows
        True
        """
        if not all(map(math.isfinite, self.ts)):
            raise ValueError("an event time that is not finite has no JSON form")
        return orjson.dumps([getattr(self, f) for f in _ROW_COLUMNS])

    @classmethod
    def loads(cls, model: str, blob: bytes) -> EventRows:
        """The rows :meth:`dumps` wrote; ValueError when ``blob`` is not such rows."""
        columns = orjson.loads(blob)
        if not (
            isinstance(columns, list)
            and len(columns) == len(_ROW_COLUMNS)
            and all(isinstance(c, list) and len(c) == len(columns[0]) for c in columns)
        ):
            raise ValueError("not the columns of event rows")
        return cls(model, *columns)

    def since(self, start: int) -> EventRows:
        """The rows from position ``start`` on (self when ``start`` is 0).

        >>> rows = EventRows.from_events("m", [Event("m", "a", 3, 1.0, "label"), Event("m", "b", 4, 2.0, "label")])
        >>> rows.since(1).ids
        ['b']
        """
        if start <= 0:
            return self
        return EventRows(
            self.model,
            self.index[start:],
            self.ts[start:],
            self.is_prediction[start:],
            self.ids[start:],
            self.features[start:],
            self.attributes[start:],
            self.prediction[start:],
            self.score[start:],
            self.label[start:],
        )

    def predictions(self) -> EventRows:
        """The rows of kind ``prediction`` (self when all are)."""
        mask = self.is_prediction
        if all(mask):
            return self

        def keep(col: list[Any]) -> list[Any]:
            return list(compress(col, mask))

        return EventRows(
            self.model,
            keep(self.index),
            keep(self.ts),
            [True] * sum(mask),
            keep(self.ids),
            keep(self.features),
            keep(self.attributes),
            keep(self.prediction),
            keep(self.score),
            keep(self.label),
        )


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record that did not become an event: ``code`` is one of :data:`~driftwarden.daemon.io.reasons.REASONS`,
    ``reason`` says what exactly, ``raw`` is the record's bytes, ``model`` the model it names when it
    names a valid one (its policy counts it in ``dead_letters.count``), else None."""

    index: int
    partition: str
    offset: int
    reason: str
    raw: bytes
    code: str = "bad_field"
    model: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The dead letter as JSON: ``raw`` is the exact text, or base64 with ``raw_encoding: base64``
        when the bytes are not UTF-8."""
        out: dict[str, Any] = {
            "index": self.index,
            "partition": self.partition,
            "offset": self.offset,
            "reason": self.reason,
        }
        out.update(raw_fields(self.raw))
        return out


def raw_fields(raw: bytes) -> dict[str, str]:
    """``{"raw": text}`` for UTF-8 bytes, else ``{"raw": base64, "raw_encoding": "base64"}``: never altered."""
    try:
        return {"raw": raw.decode("utf-8")}
    except UnicodeDecodeError:
        return {"raw": base64.b64encode(raw).decode("ascii"), "raw_encoding": "base64"}


class Invalid(ValueError):
    """An event that breaks the wire contract; the message is the dead letter's reason, ``code`` its reason code."""

    def __init__(self, message: str, code: str = "bad_field") -> None:
        super().__init__(message)
        assert code in REASONS, code
        self.code = code


def decode(
    records: Sequence[Record],
    first_index: int,
    arrival: float,
    *,
    max_bytes: int | None = None,
    guard: TimeGuard | None = None,
) -> tuple[list[Event], list[DeadLetter]]:
    """Events and dead letters of a batch; record ``i`` gets event index ``first_index + i``.

    A record longer than ``max_bytes`` is refused before it is parsed; with a ``guard``, event
    times are admitted against the stream's watermark (refused ones become dead letters).
    """
    events: list[Event] = []
    dead: list[DeadLetter] = []
    own: list[float | None] = []
    broker: list[float | None] = []
    for i, rec in enumerate(records):
        index = first_index + i
        if max_bytes is not None and len(rec.value) > max_bytes:
            reason = f"record of {len(rec.value)} bytes is over the limit of {max_bytes} (input.max_record_bytes)"
            dead.append(DeadLetter(index, rec.partition, rec.offset, reason, rec.value, "too_large"))
            continue
        try:
            obj = orjson.loads(rec.value)
        except orjson.JSONDecodeError as e:
            dead.append(DeadLetter(index, rec.partition, rec.offset, f"not JSON: {e}", rec.value, "not_json"))
            continue
        try:
            event = validate(obj, index, rec.ts if rec.ts is not None else arrival)
        except Invalid as e:
            dead.append(DeadLetter(index, rec.partition, rec.offset, str(e), rec.value, e.code, _named_model(obj)))
            continue
        events.append(event)
        own.append(event.ts if obj.get("ts") is not None else None)
        broker.append(rec.ts)
    if guard is not None and events:
        codes = guard.admit(own, broker if any(b is not None for b in broker) else None)
        if any(codes):
            kept = []
            for event, code in zip(events, codes, strict=True):
                if code is None:
                    kept.append(event)
                    continue
                rec = records[event.index - first_index]
                dead.append(
                    DeadLetter(
                        event.index,
                        rec.partition,
                        rec.offset,
                        _time_reason(code, event.ts, guard),
                        rec.value,
                        code,
                        event.model,
                    )
                )
            events = kept
            dead.sort(key=lambda d: d.index)
    return events, dead


def _named_model(obj: Any) -> str | None:
    """The model a record that broke the contract names, when it names a valid one."""
    model = obj.get("model") if type(obj) is dict else None
    return model if type(model) is str and valid_model_name(model) else None


def _time_reason(code: str, ts: float, guard: TimeGuard) -> str:
    if code == "ts_ahead":
        return f"'ts' {ts!r} is more than {guard.max_ahead:g} s past the stream's watermark (input.max_ahead)"
    return f"'ts' {ts!r} is more than {guard.max_behind:g} s before the stream's watermark (input.max_behind)"


def validate(obj: Any, index: int, arrival: float) -> Event:
    """An :class:`Event` from a decoded JSON value, or :class:`Invalid` with the reason.

    The hot path: type checks by ``type() is`` and C-level set checks, no per-value Python loop.
    (JSON has no NaN or infinity, and orjson refuses numbers that overflow a double.)
    """
    if type(obj) is not dict:
        raise Invalid(f"an event is a JSON object, got {type(obj).__name__}", "not_object")
    get = obj.get
    model = get("model")
    if type(model) is not str or not model:
        if model is None:
            raise Invalid("missing required field 'model'", "missing_field")
        raise Invalid(f"'model' must be a non-empty string, got {short_repr(model)}")
    if not valid_model_name(model):
        raise Invalid(f"'model' {short_repr(model)}: {model_name_problem(model)}", "bad_name")
    ident = get("id")
    if type(ident) is not str:
        if ident is None:
            raise Invalid("missing required field 'id'", "missing_field")
        if type(ident) is not int:
            raise Invalid(f"'id' must be a string or an integer, got {short_repr(ident)}")
        ident = str(ident)
    raw_ts = get("ts")
    if raw_ts is None:
        ts = arrival
    else:
        try:
            ts = parse_ts(raw_ts)
        except ValueError as e:
            raise Invalid(str(e), "bad_ts") from None
    features = get("features")
    if features is None:
        features = {}
    elif type(features) is not dict or not SCALAR_TYPES.issuperset(map(type, features.values())):
        _bad_mapping("features", features)
    attributes = get("attributes")
    if attributes is None:
        attributes = {}
    elif type(attributes) is not dict or not SCALAR_TYPES.issuperset(map(type, attributes.values())):
        _bad_mapping("attributes", attributes)
    prediction = get("prediction")
    if type(prediction) not in SCALAR_TYPES:
        raise Invalid(f"'prediction' must be a scalar, got {type(prediction).__name__}")
    score = get("score")
    if score is not None and type(score) is not float:
        score = _score(score, prediction)
    label = get("label")
    if type(label) not in SCALAR_TYPES:
        raise Invalid(f"'label' must be a scalar, got {type(label).__name__}")
    has_prediction = prediction is not None or bool(features) or score is not None
    if not has_prediction and label is None:
        raise Invalid("an event needs features, a prediction, a score or a label", "empty_event")
    return Event(
        model,
        ident,
        index,
        ts,
        "prediction" if has_prediction else "label",
        features,
        attributes,
        prediction,
        score,
        label,
    )


def _bad_mapping(name: str, value: Any) -> None:
    if not isinstance(value, dict):
        raise Invalid(f"'{name}' must be an object, got {type(value).__name__}")
    for k, v in value.items():
        if type(v) not in SCALAR_TYPES:
            raise Invalid(f"{name}.{k} must be a scalar (number, string, boolean or null), got {type(v).__name__}")


def _score(value: Any, prediction: Any) -> float | None:
    """The probability of the positive class: a number, or from a class→probability map the entry of
    class ``1`` (or ``true``), else of the predicted class."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise Invalid("'score' must be a number or a class→probability map, got a boolean")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, dict):
        key = "1" if "1" in value else ("true" if "true" in value else None)
        if key is None:
            key = str(prediction) if prediction is not None and str(prediction) in value else None
        if key is None:
            raise Invalid(f"'score' map has no positive class '1' or predicted class: keys {sorted(value)}")
        v = value[key]
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise Invalid(f"'score' map value for {key!r} is not a number")
        return float(v)
    raise Invalid(f"'score' must be a number or a class→probability map, got {type(value).__name__}")
