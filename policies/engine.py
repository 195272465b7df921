"""The policy engine of one model: monitors → latest signals → rules → decisions.

A rule is evaluated when a monitor it names emits a signal (a rule naming no monitor, at every
signal), at that signal's event index and event time, so the decisions depend only on the
events — not on batch sizes, wall-clock time or restarts.

>>> import tempfile, pathlib, numpy as np
>>> from detectors.base import Batch
>>> from policies.loader import load_policy
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> _ = (d / "p.yaml").write_text('''
... version: 1
... model: m
... monitors:
...   perf: {kind: performance, window: {events: 100}, threshold: 0.8}
... rules:
...   - {name: degraded, when: "perf.drift", for: 2 windows, do: alert}
... ''')
>>> engine = PolicyEngine(load_policy(d / "p.yaml"))
>>> y = np.ones(400); p = np.r_[np.ones(200), np.zeros(200)]
>>> signals, decisions = engine.process(None, Batch.of(index=range(400), prediction=p, label=y))
>>> [(s["window_end"], s["drift"]) for s in signals]
[(100, False), (200, False), (300, True), (400, True)]
>>> [(d.rule, d.at) for d in decisions]
[('degraded', 399)]
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from detectors.base import Batch, Monitor, Signal
from detectors.registry import build
from policies.durations import parse_duration
from policies.loader import LoadedPolicy, monitor_params
from policies.rules import RuleState, step

log = logging.getLogger("driftwarden.policies")

FIRED_HISTORY = 10_000
"""Drift times kept per monitor for fired_within() and count(): bounded memory."""

LATEST_DEFAULTS: dict[str, Any] = {
    "drift": False, "value": 0.0, "p_value": 1.0, "threshold": 0.0, "share_drifted": 0.0,
    "count": 0, "features": {}, "ready": False, "at": -1,
}
"""What a condition reads of a monitor that has not spoken yet."""


@dataclass(frozen=True, slots=True)
class Decision:
    """A rule fired: do ``action`` for ``model``. ``key`` is the idempotency key (model, rule, event)."""

    model: str
    rule: str
    action: str
    action_type: str
    at: int
    ts: float
    key: str
    dry_run: bool = False
    severity: str = "warning"
    reason: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["labels"], d["annotations"] = dict(self.labels), dict(self.annotations)
        return d


class PolicyEngine:
    """Monitors, latest signals, rule states and counters of one model's policy."""

    def __init__(self, policy: LoadedPolicy, reference: Mapping[str, np.ndarray] | None = None) -> None:
        self.policy = policy
        self.model = policy.model
        self.monitors: dict[str, Monitor] = {}
        for name, spec in policy.spec.monitors.items():
            params = monitor_params(spec)
            if spec.kind == "feature_drift" and reference is not None and "reference" not in params:
                wanted = params.get("features", "all")
                params["reference"] = {k: v for k, v in reference.items() if wanted == "all" or k in wanted}
            self.monitors[name] = build(spec.kind, params)
        self.latest: dict[str, dict[str, Any]] = {name: dict(LATEST_DEFAULTS) for name in self.monitors}
        self.rule_states: dict[str, RuleState] = {r.name: RuleState() for r in policy.spec.rules}
        self.drift_times: dict[str, deque[float]] = {n: deque(maxlen=FIRED_HISTORY) for n in self.monitors}
        self.events = 0
        self.labels = 0
        self.dead_letters = 0
        self.condition_errors = 0

    # -- the data path -------------------------------------------------------------------------

    def process(self, predictions: Batch | None, labeled: Batch | None) -> tuple[list[dict[str, Any]], list[Decision]]:
        """Update the monitors with one batch; return the signals (as dicts) and the decisions, in event order."""
        emitted: list[tuple[int, int, str, Signal]] = []
        for order, (name, monitor) in enumerate(self.monitors.items()):
            batch = labeled if monitor.stream == "labeled" else predictions
            if batch is None or len(batch) == 0:
                continue
            for s in monitor.update(batch):
                emitted.append((s.at, order, name, s))
        emitted.sort(key=lambda e: (e[0], e[1]))
        signals: list[dict[str, Any]] = []
        decisions: list[Decision] = []
        pred_index = predictions.index if predictions is not None else np.empty(0, np.int64)
        label_index = labeled.index if labeled is not None else np.empty(0, np.int64)
        i = 0
        while i < len(emitted):
            at = emitted[i][0]
            group = []
            while i < len(emitted) and emitted[i][0] == at:
                group.append(emitted[i])
                i += 1
            counts = (
                self.events + int(np.searchsorted(pred_index, at, "right")),
                self.labels + int(np.searchsorted(label_index, at, "right")),
            )
            names = set()
            for _, _, name, s in group:
                names.add(name)
                self._remember(name, s)
                signals.append({"type": "signal", "model": self.model, "monitor": name, **s.as_dict()})
            decisions += self._evaluate(names, at, group[-1][3].ts, counts)
            for name in names:
                if self.monitors[name].edge:
                    self.latest[name]["drift"] = False
        self.events += len(pred_index)
        self.labels += len(label_index)
        return signals, decisions

    def _remember(self, name: str, s: Signal) -> None:
        latest = dict(LATEST_DEFAULTS)
        latest.update({k: v for k, v in s.as_dict().items() if v is not None})
        latest["ready"] = True
        self.latest[name] = latest
        if s.drift:
            self.drift_times[name].append(s.ts)

    def _evaluate(self, names: set[str], at: int, ts: float, counts: tuple[int, int]) -> list[Decision]:
        context = self.context(counts)
        functions = self._functions(ts)
        out = []
        for rule in self.policy.spec.rules:
            cond = self.policy.when.get(rule.name)
            if cond is None or (cond.names & set(self.monitors) and not cond.names & names):
                continue
            holds = self._holds(rule.name, cond, context, functions)
            require = self.policy.require.get(rule.name)
            if holds and require is not None:
                holds = self._holds(rule.name, require, context, functions)
            state, fire = step(self.policy.timing[rule.name], self.rule_states[rule.name], holds, ts)
            self.rule_states[rule.name] = state
            if fire:
                out.append(self._decision(rule, at, ts, cond.source))
        return out

    def _holds(self, rule: str, cond: Any, context: dict[str, Any], functions: dict[str, Any]) -> bool:
        try:
            return bool(cond.evaluate(context, functions))
        except ValueError as e:
            self.condition_errors += 1
            log.warning("rule %s of model %s: %s; treated as false", rule, self.model, e)
            return False

    def _decision(self, rule: Any, at: int, ts: float, reason: str) -> Decision:
        return Decision(
            model=self.model, rule=rule.name, action=rule.do, action_type=self.policy.spec.action_type(rule.do),
            at=at, ts=ts, key=f"{self.model}/{rule.name}/{at}", dry_run=rule.dry_run, severity=rule.severity,
            reason=reason, labels=rule.labels, annotations=rule.annotations,
        )

    def scheduled(self, rule_name: str, now: float, at: int) -> Decision | None:
        """A cron rule's time came: its decision, unless cooldown or daily budget forbid it."""
        rule = next(r for r in self.policy.spec.rules if r.name == rule_name)
        state, fire = step(self.policy.timing[rule_name], self.rule_states[rule_name], True, now)
        self.rule_states[rule_name] = state
        if not fire:
            return None
        d = self._decision(rule, at, now, f"schedule {rule.schedule}")
        return Decision(**{**d.as_dict(), "key": f"{self.model}/{rule_name}/t{int(now)}"})

    def context(self, counts: tuple[int, int] | None = None) -> dict[str, Any]:
        """What conditions read: each monitor's latest signal, and the counts."""
        events, labels = counts or (self.events, self.labels)
        ctx: dict[str, Any] = dict(self.latest)
        ctx["events"] = {"count": events}
        ctx["labels"] = {"count": labels}
        ctx["dead_letters"] = {"count": self.dead_letters}
        return ctx

    def _functions(self, now: float) -> dict[str, Any]:
        def within(monitor: str, duration: str) -> list[float]:
            span = parse_duration(duration)
            return [t for t in self.drift_times.get(monitor, ()) if now - span < t <= now]

        return {
            "fired_within": lambda monitor, duration: bool(within(monitor, duration)),
            "count": lambda monitor, duration: len(within(monitor, duration)),
        }

    # -- state ---------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        return {
            "digest": self.policy.digest,
            "monitors": {n: m.snapshot() for n, m in self.monitors.items()},
            "latest": self.latest,
            "rules": {n: s.as_dict() for n, s in self.rule_states.items()},
            "drift_times": {n: list(q) for n, q in self.drift_times.items()},
            "counts": [self.events, self.labels, self.dead_letters, self.condition_errors],
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        for name, monitor_state in state["monitors"].items():
            if name in self.monitors:
                self.monitors[name].restore(monitor_state)
        self.latest.update({k: v for k, v in state["latest"].items() if k in self.monitors})
        self.rule_states.update({k: RuleState.from_dict(v) for k, v in state["rules"].items() if k in self.rule_states})
        for name, times in state["drift_times"].items():
            if name in self.drift_times:
                self.drift_times[name].extend(times)
        self.events, self.labels, self.dead_letters, self.condition_errors = state["counts"]


def load_reference(policy: LoadedPolicy) -> dict[str, np.ndarray] | None:
    """The policy's reference data as columns (Parquet or CSV), or None."""
    if policy.spec.reference is None:
        return None
    import pandas as pd

    from detectors.base import column

    path = Path(policy.spec.reference.path)
    if not path.is_absolute() and not path.exists():
        path = policy.path.parent / path
    frame = pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)
    return {c: column(frame[c].to_numpy()) if frame[c].dtype.kind in "fiub" else column(frame[c].tolist())
            for c in frame.columns if not str(c).startswith("__")}
