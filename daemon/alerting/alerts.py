"""Alert state with Prometheus semantics, in event time, for the rules of one model's policy.

An alert is identified by its labels: ``alertname`` (the rule), ``model``, ``severity`` and the
rule's own ``labels``. A rule that notifies (``do: alert``, or ``notify: true``) has an alert that

- starts **firing** at the evaluation where the rule's phase is ``firing`` and its condition
  holds (``for`` has elapsed) and it is not muted by inhibition; its annotations are rendered
  from that evaluation's signals (:mod:`.templates`), ``startsAt`` is that event's time;
- stays firing while the condition holds, and while the rule's ``keep_firing_for`` keeps the
  rule's phase ``firing`` after it stopped holding;
- **resolves**, with ``endsAt``, by the rule's ``resolve_after``:

  - none: at the first evaluation where the rule's phase is no longer ``firing`` (Prometheus);
  - ``N evaluations``: at the N-th evaluation in a row where the condition did not hold (and
    the phase is no longer firing);
  - a duration: at the first event of the model whose time is that long after the condition
    last held — checked at every event, not only at evaluations. This is the way for edge
    detectors (``adwin``, ``page_hinkley``...): their drift holds for one signal and they speak
    only at alarms, so the condition is never seen false.

Every transition becomes a :class:`Notification` (``firing`` or ``resolved``) with an
idempotency key ``model/rule/start-index/status``. Everything depends on event indices and
event times only, so ``replay`` lists exactly the alerts a live daemon sends.

>>> book = AlertBook("credit", [AlertSpec("concept-drift", "critical", resolve_seconds=600)])
>>> book.begin([0, 1, 2], [0.0, 1.0, 2.0])
>>> book.evaluated("concept-drift", True, "firing", False, 2, 2.0, {"errors": {"value": 0.3}})
>>> book.end()
>>> [(n.status, n.key) for n in book.drain()]
[('firing', 'credit/concept-drift/2/firing')]
>>> book.begin([3, 700], [300.0, 610.0]); book.end()           # 600 s after the last drift
>>> [(n.status, n.alert["at"], n.alert["endsAt"]) for n in book.drain()]
[('resolved', 700, 610.0)]
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from driftwarden.daemon.alerting import templates

ALERT_STATES = ("firing", "resolved")


@dataclass(frozen=True, slots=True)
class AlertSpec:
    """What a rule's alert needs: its name, severity, labels, annotation templates and how it resolves."""

    rule: str
    severity: str = "warning"
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    condition: str = ""
    monitors: tuple[str, ...] = ()
    resolve_evaluations: int | None = None
    resolve_seconds: float | None = None

    def label_set(self, model: str) -> dict[str, str]:
        """The alert's identity: the rule's labels, then alertname, model and severity (which win)."""
        return {**self.labels, "alertname": self.rule, "model": model, "severity": self.severity}


@dataclass(frozen=True, slots=True)
class Notification:
    """One transition of an alert, to deliver: ``alert`` is plain JSON (labels, annotations,
    startsAt, endsAt, at, fingerprint, status)."""

    key: str
    model: str
    rule: str
    status: str
    alert: Mapping[str, Any]

    def as_dict(self) -> dict[str, Any]:
        """The ``alert`` line of ``--json`` output."""
        a = self.alert
        return {
            "type": "alert",
            "model": self.model,
            "at": a["at"],
            "ts": a["endsAt"] if self.status == "resolved" else a["startsAt"],
            "rule": self.rule,
            "status": self.status,
            "key": self.key,
            "labels": dict(a["labels"]),
            "annotations": dict(a["annotations"]),
            "startsAt": a["startsAt"],
            "endsAt": a["endsAt"],
        }


def fingerprint(labels: Mapping[str, str]) -> str:
    """A stable id of a label set (as Alertmanager's: the same labels, the same alert).

    >>> fingerprint({"b": "2", "a": "1"}) == fingerprint({"a": "1", "b": "2"})
    True
    """
    text = "\x1f".join(f"{k}\x1e{v}" for k, v in sorted(labels.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class AlertBook:
    """The alerts of one model: fed by the policy engine's evaluations (:meth:`evaluated`, an
    :data:`driftwarden.policies.engine.RuleObserver`) and by the events' times (:meth:`begin`,
    :meth:`end`, which resolve duration-based alerts); :meth:`drain` hands out the transitions."""

    def __init__(self, model: str, specs: Iterable[AlertSpec]) -> None:
        self.model = model
        self.specs = {s.rule: s for s in specs}
        self.active: dict[str, dict[str, Any]] = {}
        """Rule → its firing alert: the alert JSON plus ``last_true`` (rule time) and ``clean``."""
        self.sent = {"firing": 0, "resolved": 0}
        self._out: list[Notification] = []
        self._index: np.ndarray = np.empty(0, np.int64)
        self._ts: np.ndarray = np.empty(0, np.float64)

    # -- the engine's evaluations ------------------------------------------------------------------

    def evaluated(
        self,
        rule: str,
        holds: bool,
        phase: str,
        muted: bool,
        at: int,
        now: float,
        latest: Mapping[str, Mapping[str, Any]],
    ) -> None:
        """One evaluation of ``rule`` at event ``at``, rule time ``now`` (see the module docstring)."""
        spec = self.specs.get(rule)
        if spec is None:
            return
        self._expire(upto=at - 1)
        alert = self.active.get(rule)
        if alert is None:
            if holds and phase == "firing" and not muted:
                self._fire(spec, at, now, latest)
            return
        if holds:
            alert["last_true"], alert["last_at"], alert["clean"] = now, at, 0
            alert["annotations"] = self._annotations(spec, latest)
            return
        alert["clean"] += 1
        if phase == "firing":  # keep_firing_for still holds it
            return
        if spec.resolve_seconds is not None:
            return  # resolves by event time only
        if alert["clean"] >= (spec.resolve_evaluations or 1):
            self._resolve(rule, at, now)

    # -- event time --------------------------------------------------------------------------------

    def begin(self, index: Sequence[int] | np.ndarray, ts: Sequence[float] | np.ndarray) -> None:
        """The event indices and times of the batch about to be processed (for duration resolves)."""
        self._index = np.asarray(index, dtype=np.int64)
        self._ts = np.asarray(ts, dtype=np.float64)

    def end(self) -> None:
        """The batch is processed: resolve what its later events' times resolve."""
        self._expire(upto=None)
        self._index, self._ts = np.empty(0, np.int64), np.empty(0, np.float64)

    def _expire(self, upto: int | None) -> None:
        """Resolve each duration-based alert at the first event (up to index ``upto``) after its
        last true evaluation whose time is ``resolve_after`` past that evaluation's time."""
        if not self.active or not len(self._index):
            return
        for rule, alert in list(self.active.items()):
            spec = self.specs.get(rule)
            if spec is None or spec.resolve_seconds is None:
                continue
            deadline = alert["last_true"] + spec.resolve_seconds
            mask = (self._index > alert["last_at"]) & (self._ts >= deadline)
            if upto is not None:
                mask &= self._index <= upto
            hits = np.flatnonzero(mask)
            if len(hits):
                i = hits[0]
                self._resolve(rule, int(self._index[i]), float(self._ts[i]))

    # -- transitions -------------------------------------------------------------------------------

    def _annotations(self, spec: AlertSpec, latest: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
        fields = templates.context(spec.rule, self.model, spec.severity, spec.condition, spec.monitors, latest)
        return templates.render_annotations(spec.annotations, fields)

    def _fire(self, spec: AlertSpec, at: int, now: float, latest: Mapping[str, Mapping[str, Any]]) -> None:
        labels = spec.label_set(self.model)
        alert = {
            "labels": labels,
            "annotations": self._annotations(spec, latest),
            "startsAt": now,
            "endsAt": None,
            "at": at,
            "start_at": at,
            "fingerprint": fingerprint(labels),
            "status": "firing",
            "last_true": now,
            "last_at": at,
            "clean": 0,
        }
        signal = latest.get(spec.monitors[0], {}) if spec.monitors else {}
        if signal.get("features") and signal.get("window_end") is not None:  # a windowed drift monitor
            alert["window"] = [signal.get("window_start") or 0, signal["window_end"]]
        self.active[spec.rule] = alert
        self._notify(spec.rule, alert)

    def _resolve(self, rule: str, at: int, now: float) -> None:
        alert = self.active.pop(rule)
        alert.update(status="resolved", endsAt=max(now, alert["startsAt"]), at=at)
        self._notify(rule, alert)

    def _notify(self, rule: str, alert: dict[str, Any]) -> None:
        status = alert["status"]
        payload = {k: v for k, v in alert.items() if k not in ("last_true", "last_at", "clean")}
        payload["labels"], payload["annotations"] = dict(alert["labels"]), dict(alert["annotations"])
        key = f"{self.model}/{rule}/{alert['start_at']}/{status}"
        self._out.append(Notification(key, self.model, rule, status, payload))
        self.sent[status] += 1

    def drain(self) -> list[Notification]:
        """The transitions since the last call, in event order."""
        out, self._out = self._out, []
        return out

    def firing(self) -> list[dict[str, Any]]:
        """The alerts firing now (for resends and the status page)."""
        return [
            {k: v for k, v in a.items() if k not in ("last_true", "last_at", "clean")} for a in self.active.values()
        ]

    def successor(self, specs: Iterable[AlertSpec]) -> AlertBook:
        """A book for a reloaded policy: the same firing alerts (of rules that still notify) and
        the transitions not yet drained."""
        book = AlertBook(self.model, specs)
        book.restore(self.snapshot())
        book._out = self.drain()
        return book

    # -- state -------------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Plain JSON: the firing alerts and the counts."""
        return {"active": {r: dict(a) for r, a in self.active.items()}, "sent": dict(self.sent)}

    def restore(self, state: Mapping[str, Any]) -> None:
        """Resume from :meth:`snapshot`: alerts of rules that no longer notify are dropped (not
        resolved: nothing observed their end)."""
        self.active = {r: dict(a) for r, a in state.get("active", {}).items() if r in self.specs}
        self.sent = {**self.sent, **state.get("sent", {})}


def specs_of(policy: Any) -> list[AlertSpec]:
    """The alert specs of a loaded policy's ``when`` rules that notify (``do: alert`` by default,
    or ``notify: true``)."""
    from driftwarden.policies.durations import parse_resolve_after

    out = []
    for rule in policy.spec.rules:
        if rule.when is None:
            continue
        notify = rule.notify if rule.notify is not None else policy.spec.action_type(rule.do) == "alert"
        if not notify:
            continue
        n, seconds = parse_resolve_after(rule.resolve_after) if rule.resolve_after is not None else (None, None)
        cond = policy.when.get(rule.name)
        monitors = policy.triggers.get(rule.name, frozenset())
        ordered = tuple(sorted(monitors, key=lambda m: (rule.when.find(m) if m in rule.when else 1 << 30, m)))
        out.append(
            AlertSpec(
                rule=rule.name,
                severity=rule.severity,
                labels=dict(rule.labels),
                annotations=dict(rule.annotations),
                condition=cond.source if cond is not None else rule.when,
                monitors=ordered,
                resolve_evaluations=n,
                resolve_seconds=seconds,
            )
        )
    return out
