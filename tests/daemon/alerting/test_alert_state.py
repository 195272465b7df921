"""Alert state follows rules with Prometheus semantics, in event time: firing, then resolved with
endsAt; the same alerts whatever the batch sizes; edge detectors resolve by resolve_after."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from driftwarden.daemon.io.events import Event
from driftwarden.daemon.pipeline import ModelPipeline
from driftwarden.policies.loader import check_policy, load_policy

LEVEL = """
version: 1
model: m
monitors:
  acc: {kind: performance, metric: accuracy, window: {events: 100}, threshold: 0.8}
rules:
  - name: degraded
    when: "acc.drift"
    for: 2 windows
    severity: critical
    labels: {team: risk}
    annotations: {summary: "accuracy {value:.2f} below {threshold}", runbook_url: "https://runbooks/{alertname}"}
    do: alert
"""

EDGE = """
version: 1
model: m
monitors:
  errors: {kind: adwin, series: error}
rules:
  - {name: concept, when: "errors.drift", severity: critical, resolve_after: 2m, do: alert}
"""


def _events(correct: np.ndarray, t0: float = 0.0) -> list[Event]:
    """A prediction and its label for each entry (1: right, 0: wrong), one second apart."""
    out = []
    for i, ok in enumerate(correct):
        out.append(Event("m", f"e{i}", 2 * i, t0 + i, "prediction", features={"x": 1.0}, prediction=1))
        out.append(Event("m", f"e{i}", 2 * i + 1, t0 + i, "label", label=int(ok)))
    return out


def _run(policy: Path, events: list[Event], batch: int, tmp: Path) -> list[dict]:
    pipe = ModelPipeline(load_policy(policy), tmp)
    out = []
    for i in range(0, len(events), batch):
        pipe.process(events[i : i + batch])
        out += [n.as_dict() for n in pipe.alerts.drain()]
    return out


def _accuracy_stream(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    p = np.r_[np.full(300, 0.95), np.full(300, 0.5), np.full(400, 0.95)]
    return (rng.random(len(p)) < p).astype(int)


def test_level_rule_fires_then_resolves_with_labels_and_templated_annotations(tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text(LEVEL)
    alerts = _run(policy, _events(_accuracy_stream()), 100, tmp_path / "b")
    assert [a["status"] for a in alerts] == ["firing", "resolved"]
    firing, resolved = alerts
    assert firing["labels"] == {"alertname": "degraded", "model": "m", "severity": "critical", "team": "risk"}
    assert firing["annotations"]["summary"].startswith("accuracy 0.")
    assert firing["annotations"]["summary"].endswith("below 0.8")
    assert firing["annotations"]["runbook_url"] == "https://runbooks/degraded"
    assert "acc" in firing["annotations"]["description"]
    # second drifted window of the bad phase (windows of 100 labeled events, accuracy falls at 300)
    assert firing["startsAt"] < resolved["endsAt"]
    assert resolved["key"].endswith("/resolved") and firing["key"].endswith("/firing")
    assert resolved["key"].rsplit("/", 1)[0] == firing["key"].rsplit("/", 1)[0]
    assert 600 <= resolved["endsAt"] < 800  # the first clean window after accuracy recovered


@pytest.mark.parametrize("batch", [1, 37, 2000])
def test_alerts_do_not_depend_on_batch_sizes(tmp_path: Path, batch: int) -> None:
    for name, text in (("level", LEVEL), ("edge", EDGE)):
        policy = tmp_path / f"{name}.yaml"
        policy.write_text(text)
        events = _events(_accuracy_stream())
        reference = _run(policy, events, 10_000, tmp_path / f"{name}-ref")
        assert reference, name
        assert _run(policy, events, batch, tmp_path / f"{name}-{batch}") == reference


def test_edge_detector_resolves_after_its_duration_of_event_time(tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text(EDGE)
    alerts = _run(policy, _events(_accuracy_stream()), 50, tmp_path / "b")
    firing = [a for a in alerts if a["status"] == "firing"]
    resolved = [a for a in alerts if a["status"] == "resolved"]
    assert firing and len(resolved) == len(firing)
    pipe = ModelPipeline(load_policy(policy), tmp_path / "c")
    pipe.process(_events(_accuracy_stream()))
    drifts = [t for t in pipe.engine.drift_times["errors"]]
    last_drift_before_end = max(t for t in drifts if t < resolved[-1]["endsAt"])
    # resolved at the first event 2 minutes (120 s of event time) after the last drift, not before
    assert resolved[-1]["endsAt"] == pytest.approx(last_drift_before_end + 120)
    for a in resolved:
        assert a["labels"]["alertname"] == "concept"


def test_n_evaluations_resolve_and_state_survives_a_restart(tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text(LEVEL.replace("for: 2 windows", "for: 2 windows\n    resolve_after: 2 evaluations"))
    events = _events(_accuracy_stream())
    whole = _run(policy, events, 10_000, tmp_path / "a")
    first = ModelPipeline(load_policy(policy), tmp_path / "b")
    first.process(events[:1100])
    got = [n.as_dict() for n in first.alerts.drain()]
    assert [a["status"] for a in got] == ["firing"]
    again = ModelPipeline(load_policy(policy), tmp_path / "b", upto=first.buffer.last_index)
    again.restore(first.snapshot())
    again.process(events[1100:])
    got += [n.as_dict() for n in again.alerts.drain()]
    assert got == whole
    assert [a["status"] for a in whole] == ["firing", "resolved"]
    plain = tmp_path / "plain.yaml"
    plain.write_text(LEVEL)
    single = _run(plain, events, 10_000, tmp_path / "c")
    assert whole[1]["endsAt"] > single[1]["endsAt"]  # one clean window more


def test_policy_alert_keys_are_checked_with_positions(tmp_path: Path) -> None:
    p = tmp_path / "p.yaml"
    p.write_text(EDGE.replace("resolve_after: 2m", "resolve_after: soon, annotations: {summary: 'x {value'}"))
    errors = [e.short() for e in check_policy(p)]
    assert any(e.startswith("p.yaml:7:") and "rules[0].resolve_after: not a 'resolve_after' value" in e for e in errors)
    assert any("rules[0].annotations.summary: bad template" in e for e in errors)
