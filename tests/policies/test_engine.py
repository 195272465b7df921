"""The policy engine: the condition context, the edge-to-level helpers, inhibition, schedules,
decisions carrying severity/labels/annotations, and restarts or reloads that change nothing."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import orjson
import pytest
from driftwarden.detectors.base import Batch
from driftwarden.policies.conditions import Condition
from driftwarden.policies.engine import Decision, PolicyEngine
from driftwarden.policies.loader import LoadedPolicy, load_policy

N = 3000


def stream(n: int = N, seed: int = 3) -> Batch:
    """``x`` shifts by 3 sd over [1000, 2000); predictions are wrong half the time over [1500, 2500).
    Labels come with their predictions; one event per second."""
    rng = np.random.default_rng(seed)
    i = np.arange(n)
    x = rng.normal(0, 1, n) + np.where((i >= 1000) & (i < 2000), 3.0, 0.0)
    label = rng.integers(0, 2, n)
    wrong = (i >= 1500) & (i < 2500) & (rng.random(n) < 0.5)
    prediction = np.where(wrong, 1 - label, label)
    return Batch.of(index=i, ts=i.astype(float), features={"x": x}, prediction=prediction, label=label)


POLICY = """\
version: 1
model: m
monitors:
  shift: {kind: adwin, series: x}
  perf: {kind: performance, window: {events: 100}, threshold: 0.8}
rules:
  - name: shifting
    when: 'perf.ready && count("shift", "10m") >= 1'
    cooldown: 5m
    severity: critical
    labels: {team: ml}
    annotations: {summary: "x moved"}
    do: alert
  - name: degraded
    when: "perf.drift"
    for: 3 windows
    require: "labels.count >= 500"
    cooldown: 20m
    inhibited_by: [retrain]
    do: retrain
  - name: nightly
    schedule: "0 3 * * *"
    require: "labels.count >= 100"
    cooldown: 1h
    inhibited_by: [retrain]
    do: retrain
actions:
  retrain:
    train: {entrypoint: "driftwarden.examples.credit.train:train"}
"""


@pytest.fixture
def make_policy(tmp_path: Path) -> Callable[..., LoadedPolicy]:
    def make(text: str = POLICY, name: str = "p.yaml") -> LoadedPolicy:
        path = tmp_path / name
        path.write_text(text)
        return load_policy(path)

    return make


def run(
    engine: PolicyEngine,
    batch: Batch,
    size: int = 250,
    restart_every: int | None = None,
    policy: LoadedPolicy | None = None,
) -> tuple[list[dict], list[Decision], PolicyEngine]:
    signals, decisions = [], []
    for k, start in enumerate(range(0, len(batch), size)):
        if restart_every and k and k % restart_every == 0:
            state = orjson.loads(orjson.dumps(engine.snapshot(), option=orjson.OPT_SERIALIZE_NUMPY))
            engine = PolicyEngine(policy or engine.policy)
            engine.restore(state)
        part = batch.take(np.arange(start, min(start + size, len(batch))))
        s, d = engine.process(part, part)
        signals += s
        decisions += d
    return signals, decisions, engine


def test_decisions_follow_the_signals_and_carry_severity_labels_and_annotations(make_policy) -> None:
    signals, decisions, _ = run(PolicyEngine(make_policy()), stream())
    shifts = [s["at"] for s in signals if s["monitor"] == "shift"]
    assert shifts and min(shifts) >= 1000
    first_shift = [d for d in decisions if d.rule == "shifting"][0]
    assert first_shift.at >= min(shifts)
    assert (first_shift.severity, dict(first_shift.labels), dict(first_shift.annotations)) == (
        "critical",
        {"team": "ml"},
        {"summary": "x moved"},
    )
    degraded = [d for d in decisions if d.rule == "degraded"]
    bad = [s["at"] for s in signals if s["monitor"] == "perf" and s["drift"]]
    assert degraded and degraded[0].at == bad[2], "fires on the third degraded window in a row"
    assert degraded[0].action_type == "retrain" and degraded[0].key == f"m/degraded/{bad[2]}"


def test_fired_within_and_count_turn_edges_into_levels(make_policy) -> None:
    engine = PolicyEngine(make_policy())
    signals, _, _ = run(engine, stream())
    alarms = [s["ts"] for s in signals if s["monitor"] == "shift"]
    assert len(alarms) >= 2
    ctx = engine.context()
    for now in (alarms[0], alarms[0] + 59, alarms[-1] + 3600):
        f = engine.functions(now)
        expected = sum(1 for t in alarms if now - 600 < t <= now)
        assert Condition(f'count("shift", "10m") == {expected}').evaluate(ctx, f)
        assert Condition('fired_within("shift", "10m")').evaluate(ctx, f) is (expected > 0)
    assert Condition('seconds("1h30m") == 5400.0').evaluate(ctx, engine.functions(0.0))


def test_the_context(make_policy) -> None:
    engine = PolicyEngine(make_policy())
    ctx = engine.context()
    assert ctx["shift"]["ready"] is False and ctx["shift"]["drift"] is False and ctx["shift"]["at"] == -1
    assert ctx["model"] == {"name": "m", "version": "", "age": math.inf}
    assert ctx["actions"]["retrain"] == {"since": math.inf, "count": 0}
    _, decisions, _ = run(engine, stream())
    engine.set_deployed("v0003", 100.0)
    ctx = engine.context()
    assert (
        ctx["events"] == {"count": N}
        and ctx["labels"] == {"count": N}
        and ctx["dead_letters"] == {"count": 0, "stream": 0}
    )
    assert ctx["model"] == {"name": "m", "version": "v0003", "age": engine.clock - 100.0}
    last_alert = max(d.ts for d in decisions if d.action_type == "alert")
    assert ctx["actions"]["alert"] == {
        "since": engine.clock - last_alert,
        "count": sum(d.action_type == "alert" for d in decisions),
    }
    perf = ctx["perf"]
    assert perf["ready"] and {"drift", "value", "threshold", "p_value", "window_end", "metric"} <= perf.keys()
    assert Condition("perf.value > 0.0 && model.age > seconds('1m') && actions.retrain.count >= 1").evaluate(
        ctx, engine.functions(engine.clock)
    )


def test_feature_drift_exposes_its_per_feature_map(make_policy) -> None:
    engine = PolicyEngine(
        make_policy(
            POLICY.replace(
                "  shift: {kind: adwin, series: x}",
                "  shift: {kind: adwin, series: x}\n  inputs: {kind: feature_drift, window: {events: 500}}",
            )
        )
    )
    run(engine, stream())
    ctx = engine.context()
    assert ctx["inputs"]["features"]["x"]["drift"] is True or ctx["inputs"]["share_drifted"] == 0.0
    assert Condition("has(inputs.features.x) && inputs.features.x.p_value >= 0.0").evaluate(ctx)


SPAN_POLICY = """\
version: 1
model: m
monitors:
  perf: {kind: performance, window: {events: 100}, threshold: 0.8}
rules:
  - {name: shifting, when: "perf.drift", cooldown: 1m, do: alert}
  - {name: degraded, when: "perf.drift", cooldown: 1m, inhibited_by: [retrain], do: retrain}
actions:
  retrain:
    inhibits_for: SPAN
    train: {entrypoint: "driftwarden.examples.credit.train:train"}
"""


def test_a_retrain_decision_mutes_inhibited_rules_for_its_span_of_event_time(make_policy) -> None:
    """Issue 13 item 9: the span is event time from the decision, so the decisions depend on the events only."""
    free = PolicyEngine(make_policy(SPAN_POLICY.replace("SPAN", "0s"), "free.yaml"))
    _, unmuted, _ = run(free, stream())
    holding = [d.ts for d in unmuted if d.rule == "degraded"]  # every window where perf drifts (cooldown < window)
    assert len(holding) >= 6 and free.inhibited == 0
    policy = make_policy(SPAN_POLICY.replace("SPAN", "250s"), "span.yaml")
    engine = PolicyEngine(policy)
    _, decisions, _ = run(engine, stream())
    expected: list[float] = []
    for t in holding:  # the first evaluation at or after the previous decision's span
        if not expected or t >= expected[-1] + 250:
            expected.append(t)
    assert [d.ts for d in decisions if d.rule == "degraded"] == expected
    assert 1 < len(expected) < len(holding) and engine.inhibited == len(holding) - len(expected)
    assert [d.ts for d in decisions if d.rule == "shifting"] == [d.ts for d in unmuted if d.rule == "shifting"]
    # The spans are state: a restart every batch makes the same decisions.
    _, restarted, _ = run(PolicyEngine(policy), stream(), restart_every=1, policy=policy)
    assert restarted == decisions


def test_a_retrain_span_defaults_to_its_training_timeout(make_policy) -> None:
    engine = PolicyEngine(make_policy(SPAN_POLICY.replace("    inhibits_for: SPAN\n", ""), "default.yaml"))
    assert (engine.span("retrain"), engine.span("alert")) == (1800.0, 0.0)


def test_scheduled_rules_respect_require_inhibition_cooldown_and_time_order(make_policy) -> None:
    engine = PolicyEngine(make_policy())
    assert engine.scheduled("nightly", 1000.0, at=0) is None, "require: labels.count >= 100"
    run(engine, stream(n=200))
    engine.muted_until["retrain"] = 2500.0  # a retrain decided earlier: its span ends at event time 2500
    assert engine.scheduled("nightly", 2000.0, at=199) is None
    d = engine.scheduled("nightly", 3000.0, at=199)
    assert d is not None and (d.key, d.action_type, d.reason) == ("m/nightly/t3000", "retrain", "schedule 0 3 * * *")
    assert engine.scheduled("nightly", 3600.0, at=199) is None, "cooldown 1h"
    assert engine.scheduled("nightly", 1.0, at=199) is None, "rule time never goes back"
    assert engine.scheduled("gone", 9e9, at=199) is None


def test_dry_run_rules_are_decided_but_do_not_count_as_actions(make_policy) -> None:
    engine = PolicyEngine(make_policy(POLICY.replace("    do: alert", "    dry_run: true\n    do: alert")))
    _, decisions, _ = run(engine, stream())
    shifting = [d for d in decisions if d.rule == "shifting"]
    assert shifting and all(d.dry_run for d in shifting)
    assert engine.context()["actions"]["alert"]["count"] == 0


@pytest.mark.parametrize("every", [1, 3, 5])
def test_a_restart_mid_stream_changes_no_signal_and_no_decision(make_policy, every: int) -> None:
    policy = make_policy()
    signals, decisions, _ = run(PolicyEngine(policy), stream())
    again_signals, again_decisions, _ = run(PolicyEngine(policy), stream(), restart_every=every)
    assert again_decisions == decisions
    assert [(s["monitor"], s["at"]) for s in again_signals] == [(s["monitor"], s["at"]) for s in signals]


def test_a_changed_monitor_starts_afresh_while_unchanged_ones_and_rule_history_carry_over(make_policy) -> None:
    old = make_policy()
    _, _, engine = run(PolicyEngine(old), stream(n=2000))
    new = make_policy(POLICY.replace("threshold: 0.8", "threshold: 0.7"), name="p2.yaml")
    fresh = PolicyEngine(new)
    kept = fresh.restore(orjson.loads(orjson.dumps(engine.snapshot(), option=orjson.OPT_SERIALIZE_NUMPY)))
    assert kept == ["shift"]
    assert fresh.latest["perf"]["ready"] is False and fresh.latest["shift"] == engine.latest["shift"]
    assert fresh.rule_states["degraded"] == engine.rule_states["degraded"], "same condition and timing: state kept"
    assert fresh.events == engine.events and fresh.clock == engine.clock
    changed = make_policy(POLICY.replace("for: 3 windows", "for: 2 windows"), name="p3.yaml")
    other = PolicyEngine(changed)
    other.restore(engine.snapshot())
    state = other.rule_states["degraded"]
    assert (state.phase, state.last_fired, state.fired) == (
        "inactive",
        engine.rule_states["degraded"].last_fired,
        engine.rule_states["degraded"].fired,
    )
