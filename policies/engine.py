"""The policy engine of one model: monitors → latest signals → rules → decisions.

A rule is evaluated when a monitor it names emits a signal (a rule naming no monitor, at every
signal), at that signal's event index and event time, so the decisions depend only on the
events — not on batch sizes, wall-clock time or restarts.

>>> import tempfile, pathlib, numpy as np
>>> from driftwarden.detectors.base import Batch
>>> from driftwarden.policies.loader import load_policy
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
import math
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from driftwarden.detectors.base import Batch, Monitor, Signal
from driftwarden.detectors.registry import build
from driftwarden.policies.durations import parse_duration
from driftwarden.policies.loader import LoadedPolicy, monitor_params, uses_policy_reference
from driftwarden.policies.rules import RuleState, step
from driftwarden.policies.schema import ACTION_TYPES

log = logging.getLogger("driftwarden.policies")

MAX_HELD_RULE_ERRORS = 100
"""Rule-evaluation errors held for the next batch's signals (the counter counts all): bounded memory."""

FIRED_HISTORY = 10_000
"""Drift times kept per monitor for fired_within() and count(): bounded memory."""

RuleObserver = Callable[[str, bool, str, bool, int, float, Mapping[str, Mapping[str, Any]]], None]
"""Called after every evaluation of a condition rule: (rule, condition held, phase after the step,
muted by inhibition, event index, rule time, the monitors' latest signals). Alert state
(:mod:`driftwarden.daemon.alerting`) follows rules through it, at each evaluation, so alerts do not
depend on batch sizes either."""

LATEST_DEFAULTS: dict[str, Any] = {
    "drift": False,
    "value": 0.0,
    "p_value": 1.0,
    "threshold": 0.0,
    "share_drifted": 0.0,
    "count": 0,
    "features": {},
    "ready": False,
    "at": -1,
    "ci_low": 0.0,
    "ci_high": 1.0,
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
    """Monitors, latest signals, rule states and counters of one model's policy.

    A rule is evaluated when a monitor its ``when`` names (directly, or inside ``fired_within``
    or ``count``) emits a signal; a rule that names no monitor, at every signal.

    The daemon tells the engine one fact from outside the event stream before each batch:
    :meth:`set_deployed` (the model version serving). Everything else the engine derives from the
    events alone — inhibition too: a decision mutes the rules that name its action in
    ``inhibited_by`` for the action's span of event time (:meth:`span`), whatever the wall clock
    and however fast the events come, so replay, paced and unpaced runs decide alike.
    """

    def __init__(self, policy: LoadedPolicy, reference: Mapping[str, np.ndarray] | None = None) -> None:
        self.policy = policy
        self.model = policy.model
        self.monitors: dict[str, Monitor] = {}
        for name, spec in policy.spec.monitors.items():
            params = monitor_params(spec)
            if reference is not None and uses_policy_reference(spec):
                wanted = params.get("features", "all")
                params["reference"] = {k: v for k, v in reference.items() if wanted == "all" or k in wanted}
            self.monitors[name] = build(spec.kind, params)
        self.latest: dict[str, dict[str, Any]] = {name: dict(LATEST_DEFAULTS) for name in self.monitors}
        self.rule_states: dict[str, RuleState] = {r.name: RuleState() for r in policy.spec.rules}
        self.drift_times: dict[str, deque[float]] = {n: deque(maxlen=FIRED_HISTORY) for n in self.monitors}
        self.events = 0
        self.labels = 0
        self.dead_letters = 0
        """Records naming this model that did not decode or validate (``dead_letters.count``)."""
        self.stream_dead_letters = 0
        """Records of the whole stream that did not decode, every model's and those naming none
        (``dead_letters.stream``)."""
        self.condition_errors = 0
        self.rule_errors: list[dict[str, Any]] = []
        """Rule-evaluation errors not yet emitted as signals (see :meth:`_holds`)."""
        self.inhibited = 0
        """Firings muted by inhibition."""
        self.clock = -math.inf
        """Rule time: the latest event time a rule was evaluated at (it never goes backwards)."""
        self.last_action: dict[str, float] = {}
        """Action name or type → rule time of the last decision for it (dry-run rules excluded)."""
        self.action_counts: dict[str, int] = {}
        self.muted_until: dict[str, float] = {}
        """Action name or type → the event time its latest decision's span ends (see :meth:`span`):
        until then, rules naming it in ``inhibited_by`` are muted."""
        self.silenced: frozenset[str] = frozenset()
        """Rules an operator silenced (set by the daemon): their decisions are dry runs, nothing is executed."""
        self.deployed: tuple[str, float | None] = ("", None)
        """(version, time it was deployed or registered) of the model in production, from the daemon."""
        self.observer: RuleObserver | None = None
        """Told every evaluation of a ``when`` rule (see :data:`RuleObserver`); None: nobody listens."""

    def set_deployed(self, version: str, since: float | None) -> None:
        """The version serving now and since when (epoch seconds); ``""`` when unknown."""
        self.deployed = (version, since)

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
            if self.rule_errors:
                signals += self._error_signals(at, group[-1][3].ts)
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
        now = self.clock = max(self.clock, ts)
        context = self.context(counts, now)
        functions = self.functions(now)
        out = []
        for rule in self.policy.spec.rules:
            cond = self.policy.when.get(rule.name)
            if cond is None:
                continue
            triggers = self.policy.triggers.get(rule.name, cond.names & set(self.monitors))
            if triggers and not triggers & names:
                continue
            holds = self._holds(rule.name, cond, context, functions)
            require = self.policy.require.get(rule.name)
            if holds and require is not None:
                holds = self._holds(rule.name, require, context, functions)
            fire = self._step(rule, holds, now, at)
            if fire:
                out.append(self._decision(rule, at, ts, cond.source))
        return out

    def _step(self, rule: Any, holds: bool, now: float, at: int | None = None) -> bool:
        """Advance a rule's state machine; note the decision's action when it fires. ``at`` (the
        event index of a condition evaluation) is what the :attr:`observer` is told."""
        muting = [k for k in self.policy.inhibitors.get(rule.name, ()) if self.muted_until.get(k, -math.inf) > now]
        muted = bool(muting)
        state, fire = step(self.policy.timing[rule.name], self.rule_states[rule.name], holds, now, inhibited=muted)
        self.rule_states[rule.name] = state
        if self.observer is not None and at is not None:
            self.observer(rule.name, holds, state.phase, muted, at, now, self.latest)
        if muted and holds and state.phase == "firing":
            self.inhibited += 1
            log.info(
                "rule %s of model %s is muted until event time %s: a %s decision's span",
                rule.name,
                self.model,
                max(self.muted_until[k] for k in muting),
                " and ".join(sorted(muting)),
            )
        if fire and not rule.dry_run:
            until = now + self.span(rule.do)
            for key in {rule.do, self.policy.spec.action_type(rule.do)}:
                self.last_action[key] = now
                self.action_counts[key] = self.action_counts.get(key, 0) + 1
                self.muted_until[key] = max(self.muted_until.get(key, -math.inf), until)
        return fire

    def span(self, action: str) -> float:
        """Seconds of event time a decision for ``action`` mutes the rules naming it in
        ``inhibited_by``, from the decision's event time: the action's ``inhibits_for``, by default
        a retrain's training timeout (the longest it may take), 0 for an alert."""
        spec = self.policy.spec.actions.get(action)
        if spec is None:
            return 0.0
        if spec.inhibits_for is not None:
            return parse_duration(spec.inhibits_for)
        return parse_duration(spec.train.timeout) if spec.train is not None else 0.0

    def _holds(self, rule: str, cond: Any, context: dict[str, Any], functions: dict[str, Any]) -> bool:
        """Whether ``cond`` holds. An evaluation error (division by zero, overflow, a wrong type, a
        missing key) is a rule-evaluation error: counted, logged with the rule's file:line, and
        recorded as a ``rule_error`` signal; the condition counts as false. Never raised."""
        # Only the names the condition reads: CEL converts every value it is given (a drift
        # signal's per-feature map costs ~100 µs), and the others cannot change the result.
        context = {name: context[name] for name in cond.names if name in context}
        try:
            return bool(cond.evaluate(context, functions))
        except Exception as e:  # noqa: BLE001 - a condition's failure is the policy's, never the daemon's
            self.condition_errors += 1
            where = f"{self.policy.path}:{self.policy.rule_lines.get(rule, 1)}"
            message = str(e) if isinstance(e, ValueError) else f"{type(e).__name__}: {e}"
            log.warning("rule %s of model %s (%s): %s; treated as false", rule, self.model, where, message[:500])
            if len(self.rule_errors) < MAX_HELD_RULE_ERRORS:
                self.rule_errors.append({"rule": rule, "where": where, "error": message[:500]})
            return False

    def _error_signals(self, at: int, ts: float) -> list[dict[str, Any]]:
        """The rule-evaluation errors since the last call, as ``rule_error`` signals at event ``at``."""
        out = [
            {
                "type": "signal",
                "model": self.model,
                "monitor": f"rule:{e['rule']}",
                "at": at,
                "ts": ts,
                "kind": "rule_error",
                "drift": False,
                "value": self.condition_errors,
                "threshold": None,
                **e,
            }
            for e in self.rule_errors
        ]
        self.rule_errors.clear()
        return out

    def _decision(self, rule: Any, at: int, ts: float, reason: str) -> Decision:
        return Decision(
            model=self.model,
            rule=rule.name,
            action=rule.do,
            action_type=self.policy.spec.action_type(rule.do),
            at=at,
            ts=ts,
            key=f"{self.model}/{rule.name}/{at}",
            dry_run=rule.dry_run or rule.name in self.silenced,
            severity=rule.severity,
            reason=reason
            + (" (silenced by an operator: recorded, not acted upon)" if rule.name in self.silenced else ""),
            labels=rule.labels,
            annotations=rule.annotations,
        )

    def scheduled(self, rule_name: str, now: float, at: int) -> Decision | None:
        """A cron rule's time came: its decision, unless its ``require`` fails, it is inhibited, or
        cooldown or daily budget forbid it. None for a rule the (reloaded) policy no longer has."""
        rule = next((r for r in self.policy.spec.rules if r.name == rule_name and r.schedule), None)
        if rule is None:
            log.warning("scheduled rule %s is not in the policy of model %s any more; ignored", rule_name, self.model)
            return None
        now = self.clock = max(self.clock, now)
        holds = True
        require = self.policy.require.get(rule_name)
        if require is not None:
            holds = self._holds(rule_name, require, self.context(None, now), self.functions(now))
        if not self._step(rule, holds, now):
            return None
        d = self._decision(rule, at, now, f"schedule {rule.schedule}")
        return Decision(**{**d.as_dict(), "key": f"{self.model}/{rule_name}/t{int(now)}"})

    def context(self, counts: tuple[int, int] | None = None, now: float | None = None) -> dict[str, Any]:
        """What conditions read (documented in docs/policy-reference.md):

        - ``<monitor>``: the monitor's latest signal — ``drift``, ``value``, ``p_value``,
          ``threshold``, ``share_drifted``, ``features`` (per-feature map), ``ready``, ``at`` and
          the kind's own fields;
        - ``events.count``, ``labels.count`` (joined), ``dead_letters.count`` (this model's),
          ``dead_letters.stream`` (the whole stream's);
        - ``model.name``, ``model.version`` (``""`` when unknown), ``model.age`` (seconds since it was deployed);
        - ``actions.<name or type>.since`` (seconds since the last decision for it; infinite if
          never) and ``actions.<name or type>.count``.
        """
        events, labels = counts or (self.events, self.labels)
        now = self.clock if now is None else now
        ctx: dict[str, Any] = dict(self.latest)
        ctx["events"] = {"count": events}
        ctx["labels"] = {"count": labels}
        ctx["dead_letters"] = {"count": self.dead_letters, "stream": self.stream_dead_letters}
        version, since = self.deployed
        age = max(0.0, now - since) if since is not None and math.isfinite(now) else math.inf
        ctx["model"] = {"name": self.model, "version": version, "age": age}
        kinds = set(self.policy.spec.actions) | set(ACTION_TYPES) | set(self.last_action)
        kinds |= {self.policy.spec.action_type(a) for a in self.policy.spec.actions}
        ctx["actions"] = {
            k: {
                "since": max(0.0, now - self.last_action[k]) if k in self.last_action else math.inf,
                "count": self.action_counts.get(k, 0),
            }
            for k in sorted(kinds)
        }
        return ctx

    def functions(self, now: float) -> dict[str, Any]:
        """The helpers conditions call, at rule time ``now``."""

        def within(monitor: str, duration: str) -> list[float]:
            span = parse_duration(duration)
            return [t for t in self.drift_times.get(monitor, ()) if now - span < t <= now]

        return {
            "fired_within": lambda monitor, duration: bool(within(monitor, duration)),
            "count": lambda monitor, duration: len(within(monitor, duration)),
            "seconds": parse_duration,
        }

    # -- state ---------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Plain JSON-able state; with each monitor's and rule's definition digest, so that
        :meth:`restore` (after a restart or a reload) resumes only what did not change."""
        return {
            "digest": self.policy.digest,
            "definitions": {n: self.policy.monitor_definition(n) for n in self.monitors},
            "rule_definitions": {r.name: self.policy.rule_definition(r.name) for r in self.policy.spec.rules},
            "monitors": {n: m.snapshot() for n, m in self.monitors.items()},
            "latest": self.latest,
            "rules": {n: s.as_dict() for n, s in self.rule_states.items()},
            "drift_times": {n: list(q) for n, q in self.drift_times.items()},
            "counts": [self.events, self.labels, self.dead_letters, self.condition_errors, self.stream_dead_letters],
            "clock": self.clock if math.isfinite(self.clock) else None,
            "last_action": dict(self.last_action),
            "action_counts": dict(self.action_counts),
            "inhibited": self.inhibited,
            "muted_until": dict(self.muted_until),
        }

    def restore(self, state: Mapping[str, Any]) -> list[str]:
        """Resume from :meth:`snapshot` output, possibly of another version of the policy.

        A monitor's state (and its latest signal and drift history) is restored when its
        definition is unchanged; a rule keeps its firing history (cooldown, daily budget) when
        its name is unchanged, and its pending/firing phase when its condition and timing are
        unchanged too. Counters always carry over. Returns the names of the monitors restored.
        """
        defs = state.get("definitions")
        kept = [
            n
            for n in state["monitors"]
            if n in self.monitors and (defs is None or defs.get(n) == self.policy.monitor_definition(n))
        ]
        for name in list(kept):
            try:
                self.monitors[name].restore(state["monitors"][name])
            except ValueError as e:  # a state this version will not load (a pickle of an older one)
                log.warning("monitor %s of model %s starts afresh: %s", name, self.policy.model, e)
                self.monitors[name] = self.monitors[name].clone()
                kept.remove(name)
                continue
            if name in state["latest"]:
                self.latest[name] = state["latest"][name]
            self.drift_times[name].clear()
            self.drift_times[name].extend(state["drift_times"].get(name, ()))
        rule_defs = state.get("rule_definitions")
        for name, saved in state["rules"].items():
            if name not in self.rule_states:
                continue
            old = RuleState.from_dict(saved)
            if rule_defs is None or rule_defs.get(name) == self.policy.rule_definition(name):
                self.rule_states[name] = old
            else:
                self.rule_states[name] = RuleState(last_fired=old.last_fired, fired=old.fired)
        counts = state["counts"]
        self.events, self.labels, self.dead_letters, self.condition_errors = counts[:4]
        # Before per-model counts (issue 13), the one count was the stream's.
        self.stream_dead_letters = counts[4] if len(counts) > 4 else self.dead_letters
        clock = state.get("clock")
        self.clock = -math.inf if clock is None else clock
        self.last_action = dict(state.get("last_action", {}))
        self.action_counts = dict(state.get("action_counts", {}))
        self.inhibited = state.get("inhibited", 0)
        self.muted_until = dict(state.get("muted_until", {}))
        return kept


def load_reference(policy: LoadedPolicy) -> dict[str, np.ndarray] | None:
    """The policy's reference data as columns (Parquet or CSV), or None."""
    if policy.spec.reference is None:
        return None
    import pandas as pd
    from driftwarden.detectors.base import column

    path = Path(policy.spec.reference.path)
    if not path.is_absolute() and not path.exists():
        path = policy.path.parent / path
    frame = pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)
    return {
        c: column(frame[c].to_numpy()) if frame[c].dtype.kind in "fiub" else column(frame[c].tolist())
        for c in frame.columns
        if not str(c).startswith("__")
    }


def rule_summary(decisions: Iterable[Mapping[str, Any]], policies: Iterable[LoadedPolicy]) -> list[dict[str, Any]]:
    """Per rule of each policy: firings, first and last event index, and what would have been done
    (the backtest table of ``driftwarden replay``; the ``rules`` of its JSON summary line).

    >>> rule_summary([{"model": "m", "rule": "r", "at": 5}, {"model": "m", "rule": "r", "at": 9}], [])
    []
    """
    ats: dict[tuple[str, str], list[int]] = {}
    for d in decisions:
        ats.setdefault((d["model"], d["rule"]), []).append(d["at"])
    out = []
    for p in policies:
        for r in p.spec.rules:
            hits = ats.get((p.model, r.name), [])
            kind = p.spec.action_type(r.do) if r.do in p.spec.actions or r.do in ACTION_TYPES else r.do
            would = r.do if kind == r.do else f"{r.do} ({kind})"
            if r.dry_run:
                would += ", dry run"
            out.append(
                {
                    "model": p.model,
                    "rule": r.name,
                    "firings": len(hits),
                    "first_at": hits[0] if hits else None,
                    "last_at": hits[-1] if hits else None,
                    "action": r.do,
                    "action_type": kind,
                    "severity": r.severity,
                    "dry_run": r.dry_run,
                    "would_do": would,
                }
            )
    return out
