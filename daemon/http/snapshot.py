"""What the loop shows the HTTP server: an immutable :class:`Snapshot`, published after a batch.

The loop thread owns every counter, monitor and rule; the server thread must never read them
while a batch changes them, and the loop must never wait for the server. So after a batch the
loop builds a frozen snapshot (reusing the parts of models that did not change) and swaps one
reference; the server reads whatever reference it finds. No lock is held across a batch.

Signals, decisions and action steps reach the publisher as they are emitted (:meth:`Publisher.observe`,
from the loop and from action worker threads: a deque is safe for that); the next
:meth:`Publisher.publish` folds them into bounded histories.

>>> from types import SimpleNamespace as NS
>>> pub = Publisher(clock=lambda: 100.0)
>>> pub.latest is None
True
>>> pub.observe({"type": "dead_letter", "model": None, "at": 3, "reason": "not JSON: unexpected character"})
>>> stats = NS(records=10, events=9, dead_letters=1, labels_joined=0, unrouted=0, checkpoints=1, timings={})
>>> loop = NS(stats=stats, pipelines={}, policies={}, source=None, flow=None, actions=None)
>>> pub.publish(loop, {"file:e.jsonl": 10}, 10, force=True)
>>> snap = pub.latest; snap.records, snap.dead_letters, snap.published_at
(10, {'not_json': 1}, 100.0)
"""

from __future__ import annotations

import bisect
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from driftwarden.daemon.state.store import ActionRecord, action_finished

HISTORY_POINTS = 500
"""Signals kept per monitor for the API and the status page: a few days of 10-minute windows."""

DECISIONS_KEPT = 1000
"""Recent decisions kept in memory (the store keeps them all)."""

PUBLISH_SECONDS = 0.2
"""At most this often a batch publishes a snapshot: fresher than any scrape or probe needs, and a
5 ms batch does not pay for building one every time."""

SOURCE_CHECK_SECONDS = 1.0
"""How often the loop asks its source whether it is reachable (a syscall, or a Kafka client look)."""

DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Histogram bucket bounds (seconds) for batch and checkpoint durations: 1 ms to 10 s."""

DEAD_LETTER_REASONS = (
    ("not JSON", "not_json"),
    ("an event is a JSON object", "not_an_object"),
    ("missing required field", "missing_field"),
    ("an event needs", "empty_event"),
)
"""Dead-letter reason prefixes → the bounded ``reason`` label (anything else is ``invalid_field``)."""


def reason_code(reason: str) -> str:
    """The bounded label value of a dead letter's free-text reason.

    >>> reason_code("not JSON: unexpected character"), reason_code("'id' must be a string, got 3.5")
    ('not_json', 'invalid_field')
    """
    for prefix, code in DEAD_LETTER_REASONS:
        if reason.startswith(prefix):
            return code
    return "invalid_field"


@dataclass(frozen=True, slots=True)
class Point:
    """One signal of a monitor: where (event index), when (event time), what it said."""

    at: int
    ts: float
    value: float | None
    threshold: float | None
    drift: bool


@dataclass(frozen=True, slots=True)
class MonitorView:
    name: str
    kind: str
    latest: Mapping[str, Any]
    """The last signal as emitted (``value``, ``threshold``, ``p_value``, ``features``...); empty before the first."""
    history: tuple[Point, ...]
    signals: int
    """Signals seen since this daemon started."""
    fill: float | None = None
    """Share of the open window collected (windowed monitors)."""
    last_signal_at: float | None = None
    """Wall time (epoch seconds) of the last signal."""


@dataclass(frozen=True, slots=True)
class RuleView:
    name: str
    action: str
    state: str
    """inactive, pending or firing."""
    decisions: int
    silenced_until: float | None = None


@dataclass(frozen=True, slots=True)
class ModelView:
    name: str
    policy: str
    digest: str
    events: int
    labels_joined: int
    pending: Mapping[str, int]
    expired: Mapping[str, int]
    champion: str
    monitors: Mapping[str, MonitorView]
    rules: Mapping[str, RuleView]


@dataclass(frozen=True, slots=True)
class Histogram:
    """Cumulative counts per bucket bound, with the sum and count (Prometheus' histogram)."""

    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    total: float
    count: int


@dataclass(frozen=True, slots=True)
class Snapshot:
    published_at: float
    started_at: float
    progressed_at: float
    """Wall time the loop last read records (or ``started_at``)."""
    records: int
    events: int
    dead_letters: Mapping[str, int]
    unrouted: int
    labels_joined: int
    next_index: int
    positions: Mapping[str, int]
    lag: Mapping[str, int]
    owned: tuple[str, ...]
    checkpoints: int
    last_checkpoint_at: float | None
    batch_seconds: Histogram
    checkpoint_seconds: Histogram
    source_reachable: bool
    paused: str | None
    """Why ingestion is paused (backpressure), or None."""
    running_actions: int
    actions: Mapping[tuple[str, str], int]
    """(action type, final state) → count, since the store began."""
    models: Mapping[str, ModelView]
    decisions: tuple[Mapping[str, Any], ...]
    stopped: bool = False
    source_problem: str | None = None
    """Why the source is unreachable (a Kafka outage being waited out), when it says."""
    notifications: Mapping[str, int] = field(default_factory=dict)
    """The alerting outbox (daemon/alerting/outbox.py): rows ``delivered``/``failed``/``pending``
    (since the store began), ``retried`` and ``dropped`` (this process); empty without ``alerting:``."""
    alerts_firing: Mapping[str, int] = field(default_factory=dict)
    """Model → alerts firing now."""


class _Buckets:
    """A histogram the loop fills (plain integers)."""

    def __init__(self) -> None:
        self.counts = [0] * (len(DURATION_BUCKETS) + 1)
        self.total = 0.0
        self.count = 0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(DURATION_BUCKETS, seconds)] += 1
        self.total += seconds
        self.count += 1

    def frozen(self) -> Histogram:
        cumulative, running = [], 0
        for c in self.counts:
            running += c
            cumulative.append(running)
        return Histogram(DURATION_BUCKETS, tuple(cumulative), self.total, self.count)


@dataclass
class _MonitorTrack:
    latest: dict[str, Any] = field(default_factory=dict)
    history: deque[Point] = field(default_factory=lambda: deque(maxlen=HISTORY_POINTS))
    signals: int = 0
    last_signal_at: float | None = None


class Publisher:
    """Builds snapshots in the loop thread and holds the latest one for the server thread."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.latest: Snapshot | None = None
        """The last published snapshot: read it once per request (it never changes; a new one replaces it)."""
        self.started_at = clock()
        self.silences: dict[tuple[str, str], float] = {}
        """(model, rule) → wall time the silence ends (set by daemon/http/control.py in the loop thread)."""
        self._silences_seen: dict[tuple[str, str], float] = {}
        self._inbox: deque[dict[str, Any]] = deque()
        self._tracks: dict[tuple[str, str], _MonitorTrack] = {}
        self._decisions: deque[Mapping[str, Any]] = deque(maxlen=DECISIONS_KEPT)
        self._rule_decisions: dict[tuple[str, str], int] = {}
        self._dead: dict[str, int] = {}
        self._actions: dict[tuple[str, str], int] = {}
        self._models: dict[str, ModelView] = {}
        self._batch, self._checkpoint = _Buckets(), _Buckets()
        self._busy = 0.0
        self._checkpoint_busy = 0.0
        self._seen_checkpoints = 0
        self._last_checkpoint_at: float | None = None
        self._progressed_at = self.started_at
        self._records = 0
        self._last_publish = -float("inf")
        self._reachable = True
        self._problem: str | None = None
        self._source_checked = -float("inf")

    def observe(self, item: Mapping[str, Any]) -> None:
        """An emitted signal, decision, dead letter or action step (any thread)."""
        if item.get("type") in ("signal", "decision", "dead_letter", "action"):
            self._inbox.append(dict(item))

    def seed(self, pipelines: Mapping[str, Any], actions: Iterable[ActionRecord]) -> None:
        """Start from restored state: each monitor's last signal, and the store's ended actions."""
        for model, pipe in pipelines.items():
            for name, latest in pipe.engine.latest.items():
                if latest.get("ready"):
                    self._tracks[(model, name)] = _MonitorTrack(
                        latest={k: v for k, v in latest.items() if k != "ready"}
                    )
        for a in actions:
            if a.finished:
                key = (a.type, str(a.state))
                self._actions[key] = self._actions.get(key, 0) + 1

    def publish(self, daemon: Any, positions: Mapping[str, int], next_index: int, *, force: bool = False) -> None:
        """After a batch (loop thread): fold in what was observed and swap in a new snapshot, at most
        every :data:`PUBLISH_SECONDS` unless ``force``."""
        now = self.clock()
        stats = daemon.stats
        if stats.records != self._records:
            self._records, self._progressed_at = stats.records, now
        busy = sum(stats.timings.values())
        checkpoint_busy = stats.timings.get("checkpoint", 0.0)
        if busy > self._busy:  # one batch's duration, observed at its end (publish follows every batch)
            self._batch.observe(busy - self._busy)
            self._busy = busy
        if stats.checkpoints != self._seen_checkpoints:
            self._seen_checkpoints, self._last_checkpoint_at = stats.checkpoints, now
            if checkpoint_busy > self._checkpoint_busy:
                self._checkpoint.observe(checkpoint_busy - self._checkpoint_busy)
        self._checkpoint_busy = checkpoint_busy
        if not force and now - self._last_publish < PUBLISH_SECONDS:
            return
        self._last_publish = now
        touched = self._drain(now, daemon.policies)
        source = daemon.source
        if now - self._source_checked >= SOURCE_CHECK_SECONDS:
            self._source_checked = now
            self._reachable = bool(getattr(source, "reachable", True))
            self._problem = getattr(source, "problem", None) if not self._reachable else None
        lag_of = getattr(source, "lag", None)
        lag = lag_of(positions) if callable(lag_of) else {}
        owned = tuple(getattr(source, "assignment", ()) or ())
        if self.silences != self._silences_seen:
            self._silences_seen = dict(self.silences)
            touched |= {m for m, _ in self.silences} | {m for m, v in self._models.items() if _silenced(v)}
        for model, pipe in daemon.pipelines.items():
            old = self._models.get(model)
            if (
                old is None
                or model in touched
                or old.events != pipe.engine.events
                or old.policy != str(pipe.policy.path)
                or old.champion != pipe.engine.deployed[0]  # a deploy while the model's stream is idle
            ):
                self._models[model] = self._model_view(model, pipe, old, now)
        for gone in set(self._models) - set(daemon.pipelines):
            del self._models[gone]
        flow = daemon.flow
        actions = daemon.actions
        self.latest = Snapshot(
            published_at=now,
            started_at=self.started_at,
            progressed_at=self._progressed_at,
            records=stats.records,
            events=stats.events,
            dead_letters=dict(self._dead),
            unrouted=stats.unrouted,
            labels_joined=stats.labels_joined,
            next_index=next_index,
            positions=dict(positions),
            lag=lag,
            owned=owned,
            checkpoints=stats.checkpoints,
            last_checkpoint_at=self._last_checkpoint_at,
            batch_seconds=self._batch.frozen(),
            checkpoint_seconds=self._checkpoint.frozen(),
            source_reachable=self._reachable,
            source_problem=self._problem,
            paused=getattr(flow, "paused_for", None),
            running_actions=actions.running if actions is not None else 0,
            actions=dict(self._actions),
            models=dict(self._models),
            decisions=tuple(self._decisions),
            notifications=_notifications(daemon),
            alerts_firing={m: len(p.alerts.active) for m, p in daemon.pipelines.items() if hasattr(p, "alerts")},
        )

    def stopped(self) -> None:
        """The loop ended: /livez and /readyz say so."""
        if self.latest is not None:
            self.latest = replace(self.latest, stopped=True, published_at=self.clock())

    # -- internals ------------------------------------------------------------------------------

    def _drain(self, now: float, policies: Mapping[str, Any]) -> set[str]:
        touched: set[str] = set()
        while self._inbox:
            item = self._inbox.popleft()
            kind, model = item["type"], str(item.get("model"))
            if kind == "signal":
                track = self._tracks.setdefault((model, item["monitor"]), _MonitorTrack())
                track.latest = {k: v for k, v in item.items() if k not in ("type", "model", "monitor")}
                track.history.append(
                    Point(
                        int(item["at"]),
                        float(item["ts"]),
                        item.get("value"),
                        item.get("threshold"),
                        bool(item["drift"]),
                    )
                )
                track.signals += 1
                track.last_signal_at = now
                touched.add(model)
            elif kind == "decision":
                self._decisions.append(item)
                key = (model, item["rule"])
                self._rule_decisions[key] = self._rule_decisions.get(key, 0) + 1
                touched.add(model)
            elif kind == "dead_letter":
                code = reason_code(str(item.get("reason", "")))
                self._dead[code] = self._dead.get(code, 0) + 1
            elif kind == "action" and action_finished(str(item.get("state")), item):
                key = (_action_type(item, policies), str(item["state"]))
                self._actions[key] = self._actions.get(key, 0) + 1
        return touched

    def _model_view(self, model: str, pipe: Any, old: ModelView | None, now: float) -> ModelView:
        engine = pipe.engine
        monitors = {}
        for name, monitor in engine.monitors.items():
            track = self._tracks.get((model, name)) or _MonitorTrack()
            prev = old.monitors.get(name) if old is not None else None
            fill = monitor.window_fill() if hasattr(monitor, "window_fill") else None
            if prev is not None and prev.signals == track.signals and prev.fill == fill:
                monitors[name] = prev
                continue
            history = tuple(track.history) if prev is None or prev.signals != track.signals else prev.history
            monitors[name] = MonitorView(
                name, monitor.kind, dict(track.latest), history, track.signals, fill, track.last_signal_at
            )
        rules = {}
        for rule in engine.policy.spec.rules:
            state = engine.rule_states.get(rule.name)
            until = self.silences.get((model, rule.name))
            rules[rule.name] = RuleView(
                rule.name,
                rule.do,
                state.phase if state is not None else "inactive",
                self._rule_decisions.get((model, rule.name), 0),
                until if until is not None and until > now else None,
            )
        return ModelView(
            name=model,
            policy=str(pipe.policy.path),
            digest=pipe.policy.digest,
            events=engine.events,
            labels_joined=pipe.joiner.joined,
            pending=dict(pipe.joiner.pending),
            expired=dict(pipe.joiner.expired),
            champion=engine.deployed[0],
            monitors=monitors,
            rules=rules,
        )


def _silenced(view: ModelView) -> bool:
    return any(r.silenced_until is not None for r in view.rules.values())


def _action_type(item: Mapping[str, Any], policies: Mapping[str, Any]) -> str:
    """The type (``alert``, ``retrain``) of the action an action step names, from its model's policy."""
    policy = policies.get(str(item.get("model")))
    try:
        return str(policy.spec.action_type(item["action"])) if policy is not None else "unknown"
    except (KeyError, AttributeError):
        return "unknown"


def _notifications(daemon: Any) -> dict[str, int]:
    """The outbox's counts for /metrics: rows per state in the store, and this process's retries
    and dropped resends (one indexed GROUP BY per publish)."""
    outbox = getattr(daemon, "outbox", None)
    if outbox is None:
        return {}
    stats = outbox.stats()
    return {**stats["outbox"], "retried": stats["retried"], "dropped": stats["dropped"]}
