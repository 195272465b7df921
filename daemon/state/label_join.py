"""Join late labels to their predictions by id, holding unmatched halves for a bounded time.

>>> from driftwarden.daemon.io.events import Event
>>> j = LabelJoiner(ttl=60.0)
>>> j.add(Event("m", "a", 0, 0.0, "prediction", features={"x": 1.0}, prediction=1))
>>> j.add(Event("m", "a", 5, 10.0, "label", label=0))
Joined(index=5, ts=10.0, id='a', features={'x': 1.0}, attributes={}, prediction=1, score=None, label=0)
>>> j.add(Event("m", "b", 6, 20.0, "prediction", prediction=1)); j.expire(now=100.0); j.expired
{'predictions': 1, 'labels': 0}

A micro-batch joins as columns, without an object per event or per pair:

>>> from driftwarden.daemon.io.events import EventRows
>>> rows = EventRows("m", [7, 8, 9], [30.0, 31.0, 32.0], [True, False, True], ["c", "c", "d"],
...                  [{"x": 2.0}, {}, {"x": 3.0}], [{}, {}, {}], [1, None, 0], [None, None, None], [None, 1, 1])
>>> pairs = j.add_rows(rows)
>>> pairs.index, pairs.ids, pairs.label, pairs.features, j.pending
([8, 9], ['c', 'd'], [1, 1], [{'x': 2.0}, {'x': 3.0}], {'predictions': 0, 'labels': 0})
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from itertools import islice
from operator import itemgetter
from typing import Any

from driftwarden.daemon.io.events import EVENT_FIELDS, Event, EventRows

DEFAULT_TTL = 7 * 86400.0
"""Hold an unmatched prediction or label for a week of event time: labels often come days later."""

LOG_SLACK = 10_000
"""Halves the store's log of pending halves may hold beyond twice the live ones before it is rewritten."""

DEFAULT_MAX_PENDING = 200_000
"""Bound on unmatched halves held per model; the oldest go first (counted as expired)."""


@dataclass(frozen=True, slots=True)
class PendingDelta:
    """Changes of the unmatched halves since the store last wrote them, per side (``predictions``,
    ``labels``): halves to write in arrival order, ids to delete; ``replace``: delete all first."""

    replace: bool
    added: dict[str, list[tuple[Any, ...]]]
    removed: dict[str, list[str]]


@dataclass(frozen=True, slots=True)
class Joined:
    """A prediction with its label; ``index``/``ts`` are those of the event that completed the pair."""

    index: int
    ts: float
    id: str
    features: dict[str, Any]
    attributes: dict[str, Any]
    prediction: Any
    score: float | None
    label: Any


@dataclass(slots=True)
class LabeledRows:
    """Joined pairs as columns, in the order they were completed (see :class:`Joined` for one pair)."""

    index: list[int]
    ts: list[float]
    ids: list[str]
    features: list[dict[str, Any]]
    attributes: list[dict[str, Any]]
    prediction: list[Any]
    score: list[float | None]
    label: list[Any]

    @classmethod
    def of(cls, pairs: list[tuple[Any, ...]]) -> LabeledRows:
        """From ``(index, ts, id, features, attributes, prediction, score, label)`` tuples."""
        if not pairs:
            return cls([], [], [], [], [], [], [], [])
        return cls(*map(list, zip(*pairs, strict=True)))

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> Joined:
        return Joined(
            self.index[i],
            self.ts[i],
            self.ids[i],
            self.features[i],
            self.attributes[i],
            self.prediction[i],
            self.score[i],
            self.label[i],
        )

    def upto(self, index: int) -> LabeledRows:
        """The rows with index <= ``index``."""
        keep = [i for i, x in enumerate(self.index) if x <= index]
        if len(keep) == len(self):
            return self
        columns: tuple[list[Any], ...] = (
            self.index,
            self.ts,
            self.ids,
            self.features,
            self.attributes,
            self.prediction,
            self.score,
            self.label,
        )
        return LabeledRows(*([col[i] for i in keep] for col in columns))

    @staticmethod
    def concat(parts: list[LabeledRows]) -> LabeledRows:
        if len(parts) == 1:
            return parts[0]
        out = LabeledRows([], [], [], [], [], [], [], [])
        for p in parts:
            for name in LabeledRows.__slots__:
                getattr(out, name).extend(getattr(p, name))
        return out


class LabelJoiner:
    """Pairs predictions and labels of one model by id, in either arrival order.

    An unmatched half waits as a tuple of :data:`~driftwarden.daemon.io.events.EVENT_FIELDS` (its snapshot is
    the dict of those fields, as an :class:`Event` would give).
    """

    def __init__(
        self, ttl: float = DEFAULT_TTL, max_pending: int = DEFAULT_MAX_PENDING, duplicates: str = "keep_last"
    ) -> None:
        if duplicates not in DUPLICATE_POLICIES:
            raise ValueError(f"duplicates must be one of {', '.join(DUPLICATE_POLICIES)}, got {duplicates!r}")
        self.ttl, self.max_pending, self.keep = ttl, max_pending, duplicates
        self.duplicates = {"predictions": 0, "labels": 0}
        """Halves that arrived while one with the same id was pending (kept or dropped by ``keep``)."""
        self._predictions: OrderedDict[str, tuple[Any, ...]] = OrderedDict()
        self._labels: OrderedDict[str, tuple[Any, ...]] = OrderedDict()
        self.expired = {"predictions": 0, "labels": 0}
        self.joined = 0
        # What the store holds of the pending halves (see pending_delta): ids written, ids put
        # since, and whether the store's copy must be replaced whole (unknown, or from a snapshot).
        self._written: dict[str, set[str]] = {"predictions": set(), "labels": set()}
        self._put: dict[str, set[str]] = {"predictions": set(), "labels": set()}
        self._taken = {"predictions": 0, "labels": 0}
        """Halves gone (joined, expired, evicted) since the store last wrote them: while none are, every
        written and every put half is still pending, and a delta needs no look-up per half."""
        self._replace = True
        self._logged = 0  # halves the store's log holds, live or not: past twice the live ones it is rewritten

    @property
    def pending(self) -> dict[str, int]:
        return {"predictions": len(self._predictions), "labels": len(self._labels)}

    def add(self, event: Event) -> Joined | None:
        """Add an event; return the labeled pair it completes, if any."""
        pairs = self.add_rows(EventRows.from_events(event.model, [event]))
        return pairs[0] if len(pairs) else None

    def add_rows(self, rows: EventRows) -> LabeledRows:
        """Add a batch of one model's events in order; return the pairs they complete, in order.

        One pass over the ids with dict operations only; a pair is a tuple until the columns are made.
        """
        predictions, labels = self._predictions, self._labels
        take_prediction, take_label = predictions.pop, labels.pop
        put_prediction, put_label = self._put["predictions"].add, self._put["labels"].add
        limit = self.max_pending
        pairs: list[tuple[Any, ...]] = []
        pair = pairs.append
        model = rows.model
        taken_predictions = taken_labels = 0
        for index, ts, is_prediction, ident, features, attributes, prediction, score, label in zip(
            rows.index,
            rows.ts,
            rows.is_prediction,
            rows.ids,
            rows.features,
            rows.attributes,
            rows.prediction,
            rows.score,
            rows.label,
            strict=True,
        ):
            if is_prediction:
                if label is None:
                    waiting = take_label(ident, None)
                    if waiting is None:
                        if ident in predictions:
                            self.duplicates["predictions"] += 1
                            if self.keep == "keep_first":
                                continue
                            predictions.move_to_end(ident)
                        predictions[ident] = (
                            model,
                            ident,
                            index,
                            ts,
                            "prediction",
                            features,
                            attributes,
                            prediction,
                            score,
                            None,
                        )
                        put_prediction(ident)
                        if len(predictions) > limit:
                            self._evict(predictions, "predictions")
                        continue
                    label = waiting[_LABEL]
                    taken_labels += 1
                pair((index, ts, ident, features, attributes, prediction, score, label))
            else:
                held = take_prediction(ident, None)
                if held is not None:
                    pair((index, ts, ident, held[5], held[6], held[7], held[8], label))
                    taken_predictions += 1
                    continue
                if ident in labels:
                    self.duplicates["labels"] += 1
                    if self.keep == "keep_first":
                        continue
                    labels.move_to_end(ident)
                labels[ident] = (model, ident, index, ts, "label", features, attributes, prediction, score, label)
                put_label(ident)
                if len(labels) > limit:
                    self._evict(labels, "labels")
        self.joined += len(pairs)
        self._taken["predictions"] += taken_predictions
        self._taken["labels"] += taken_labels
        return LabeledRows.of(pairs)

    def _evict(self, store: OrderedDict[str, tuple[Any, ...]], what: str) -> None:
        """Drop the oldest halves beyond ``max_pending`` and count them as expired."""
        while len(store) > self.max_pending:
            store.popitem(last=False)
            self.expired[what] += 1
            self._taken[what] += 1

    def expire(self, now: float) -> None:
        """Drop halves older than the TTL (by event time) and count them."""
        for store, what in ((self._predictions, "predictions"), (self._labels, "labels")):
            while store:
                first = next(iter(store.values()))
                if now - first[_TS] <= self.ttl:
                    break
                store.popitem(last=False)
                self.expired[what] += 1
                self._taken[what] += 1

    def snapshot(self, pending: bool = True) -> dict[str, Any]:
        """Counters, and the pending halves as rows of ``fields`` (tuples: orjson writes them in C,
        no dict per event) unless ``pending=False``: then the store keeps them through
        :meth:`pending_delta`, and a checkpoint writes what changed, not all of them again."""
        state: dict[str, Any] = {
            "fields": list(EVENT_FIELDS),
            "expired": dict(self.expired),
            "joined": self.joined,
            "duplicates": dict(self.duplicates),
        }
        if pending:
            state["predictions"] = list(self._predictions.values())
            state["labels"] = list(self._labels.values())
        return state

    def pending_delta(self) -> PendingDelta:
        """The pending halves to write and the ids to delete since the last :meth:`written`, per side.

        Halves are put only at the end of the arrival order, so those put since are its last ones
        (in order); the deleted ids are the written ones no longer pending (joined, expired, evicted).
        The store appends a delta to a log; a ``replace`` delta (the first, the first after a
        restore, or once the log holds more than twice the live halves) writes them all afresh.
        While no half went since the last :meth:`written` (predictions whose labels have not come yet), a delta
        costs the new halves only: no look-up of the ids put, no pass over the ids written.
        """
        added: dict[str, list[tuple[Any, ...]]] = {}
        removed: dict[str, list[str]] = {}
        live = len(self._predictions) + len(self._labels)
        replace = self._replace or self._logged > 2 * live + LOG_SLACK
        for side, store in (("predictions", self._predictions), ("labels", self._labels)):
            if replace:
                added[side], removed[side] = list(store.values()), []
                continue
            put, written, gone = self._put[side], self._written[side], self._taken[side]
            fresh = sum(1 for i in put if i in store) if gone else len(put)
            added[side] = list(islice(reversed(store.values()), fresh))[::-1]
            removed[side] = list(written.difference(store)) if gone else []
        return PendingDelta(replace, added, removed)

    def written(self, delta: PendingDelta) -> None:
        """The store committed ``delta``."""
        for side in ("predictions", "labels"):
            ids = self._written[side]
            if delta.replace:
                ids.clear()
            ids.difference_update(delta.removed[side])
            ids.update(map(itemgetter(_ID), delta.added[side]))
            self._put[side].clear()
            self._taken[side] = 0
        self._logged = (0 if delta.replace else self._logged) + sum(map(len, delta.added.values()))
        self._replace = False

    def restore_pending(self, predictions: list[tuple[Any, ...]], labels: list[tuple[Any, ...]]) -> None:
        """The pending halves as the store holds them (in arrival order), after :meth:`restore` of a
        snapshot taken with ``pending=False``."""
        self._predictions = OrderedDict((h[_ID], h) for h in predictions)
        self._labels = OrderedDict((h[_ID], h) for h in labels)
        self._written = {"predictions": set(self._predictions), "labels": set(self._labels)}
        self._put = {"predictions": set(), "labels": set()}
        self._replace = True  # the log may hold more than the live halves: start it afresh

    def restore(self, state: dict[str, Any]) -> None:
        def rows(items: list[Any]) -> OrderedDict[str, tuple[Any, ...]]:
            if "fields" in state:
                positions = [state["fields"].index(f) for f in EVENT_FIELDS]
                return OrderedDict((r[positions[_ID]], tuple(r[i] for i in positions)) for r in items)
            return OrderedDict((e["id"], tuple(e[f] for f in EVENT_FIELDS)) for e in items)  # older snapshots

        self.expired = dict(state["expired"])
        self.joined = state["joined"]
        self.duplicates = dict(state.get("duplicates", {"predictions": 0, "labels": 0}))
        self._replace = True  # whatever the store holds is replaced at the next delta
        if "predictions" in state:
            self._predictions = rows(state["predictions"])
            self._labels = rows(state["labels"])


DUPLICATE_POLICIES = ("keep_last", "keep_first")
"""What a second pending half with the same id does: replace the first (the default) or be dropped."""

_TS, _LABEL = EVENT_FIELDS.index("ts"), EVENT_FIELDS.index("label")
_ID = EVENT_FIELDS.index("id")
