"""Join late labels to their predictions by id, holding unmatched halves for a bounded time.

>>> from daemon.events import Event
>>> j = LabelJoiner(ttl=60.0)
>>> j.add(Event("m", "a", 0, 0.0, "prediction", features={"x": 1.0}, prediction=1))
>>> j.add(Event("m", "a", 5, 10.0, "label", label=0))
Joined(index=5, ts=10.0, id='a', features={'x': 1.0}, attributes={}, prediction=1, score=None, label=0)
>>> j.add(Event("m", "b", 6, 20.0, "prediction", prediction=1)); j.expire(now=100.0); j.expired
{'predictions': 1, 'labels': 0}
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from daemon.events import Event

DEFAULT_TTL = 7 * 86400.0
"""Hold an unmatched prediction or label for a week of event time: labels often come days later."""

DEFAULT_MAX_PENDING = 200_000
"""Bound on unmatched halves held per model; the oldest go first (counted as expired)."""


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


class LabelJoiner:
    """Pairs predictions and labels of one model by id, in either arrival order."""

    def __init__(self, ttl: float = DEFAULT_TTL, max_pending: int = DEFAULT_MAX_PENDING) -> None:
        self.ttl, self.max_pending = ttl, max_pending
        self._predictions: OrderedDict[str, Event] = OrderedDict()
        self._labels: OrderedDict[str, Event] = OrderedDict()
        self.expired = {"predictions": 0, "labels": 0}
        self.joined = 0

    @property
    def pending(self) -> dict[str, int]:
        return {"predictions": len(self._predictions), "labels": len(self._labels)}

    def add(self, event: Event) -> Joined | None:
        """Add an event; return the labeled pair it completes, if any."""
        if event.kind == "prediction":
            if event.label is not None:
                self.joined += 1
                return _pair(event, event.label, event)
            label = self._labels.pop(event.id, None)
            if label is not None:
                self.joined += 1
                return _pair(event, label.label, event)
            self._hold(self._predictions, event, "predictions")
            return None
        prediction = self._predictions.pop(event.id, None)
        if prediction is not None:
            self.joined += 1
            return _pair(prediction, event.label, event)
        self._hold(self._labels, event, "labels")
        return None

    def _hold(self, store: OrderedDict[str, Event], event: Event, what: str) -> None:
        store[event.id] = event
        store.move_to_end(event.id)
        while len(store) > self.max_pending:
            store.popitem(last=False)
            self.expired[what] += 1

    def expire(self, now: float) -> None:
        """Drop halves older than the TTL (by event time) and count them."""
        for store, what in ((self._predictions, "predictions"), (self._labels, "labels")):
            while store:
                first = next(iter(store.values()))
                if now - first.ts <= self.ttl:
                    break
                store.popitem(last=False)
                self.expired[what] += 1

    def snapshot(self) -> dict[str, Any]:
        return {
            "predictions": [_event_dict(e) for e in self._predictions.values()],
            "labels": [_event_dict(e) for e in self._labels.values()],
            "expired": dict(self.expired), "joined": self.joined,
        }

    def restore(self, state: dict[str, Any]) -> None:
        self._predictions = OrderedDict((e["id"], Event(**e)) for e in state["predictions"])
        self._labels = OrderedDict((e["id"], Event(**e)) for e in state["labels"])
        self.expired = dict(state["expired"])
        self.joined = state["joined"]


def _pair(prediction: Event, label: Any, closer: Event) -> Joined:
    return Joined(
        index=closer.index, ts=closer.ts, id=prediction.id, features=prediction.features,
        attributes=prediction.attributes, prediction=prediction.prediction, score=prediction.score, label=label,
    )


def _event_dict(e: Event) -> dict[str, Any]:
    return {"model": e.model, "id": e.id, "index": e.index, "ts": e.ts, "kind": e.kind, "features": e.features,
            "attributes": e.attributes, "prediction": e.prediction, "score": e.score, "label": e.label}
