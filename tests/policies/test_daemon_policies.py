"""Policies in a real Daemon: dry runs, inhibition in event time, and hot reload."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from click.testing import CliRunner
from driftwarden.daemon.cli import main
from driftwarden.daemon.config import Settings
from driftwarden.daemon.io.sources import MemorySource
from driftwarden.daemon.runtime import Daemon
from driftwarden.policies.loader import load_policy

from tests.conftest import json_lines, run_cli

T0 = 1_700_000_000.0


def records(n: int = 3000, seed: int = 3, model: str = "m") -> list[bytes]:
    """``x`` shifts by 3 sd over [1000, 2000); predictions are wrong half the time over [1500, 2500)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        x = rng.normal(0, 1) + (3.0 if 1000 <= i < 2000 else 0.0)
        label = int(rng.integers(0, 2))
        wrong = 1500 <= i < 2500 and rng.random() < 0.5
        out.append(
            orjson.dumps(
                {
                    "model": model,
                    "id": f"p{i}",
                    "ts": T0 + i,
                    "features": {"x": x},
                    "prediction": 1 - label if wrong else label,
                    "label": label,
                }
            )
        )
    return out


POLICY = """\
version: 1
model: m
monitors:
  shift: {kind: adwin, series: x}
  perf: {kind: performance, window: {events: 100}, threshold: 0.8}
rules:
  - name: shifting
    when: "shift.drift"
    severity: critical
    labels: {team: ml}
    do: alert
  - name: degraded
    when: "perf.drift"
    for: 3 windows
    cooldown: 20m
    inhibited_by: [retrain]
    do: alert
"""


class Collect:
    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def __call__(self, item: dict[str, Any]) -> None:
        self.items.append(item)

    def of(self, kind: str, **match: Any) -> list[dict[str, Any]]:
        return [i for i in self.items if i["type"] == kind and all(i.get(k) == v for k, v in match.items())]


def make_daemon(
    tmp_path: Path,
    text: str = POLICY,
    *,
    execute: bool = True,
    watch: bool = False,
    n: int = 3000,
    state: str = "state",
) -> tuple[Daemon, Collect, Path]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "policy.yaml"
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    out = Collect()
    settings = Settings(state_dir=tmp_path / state, batch_size=250, execute=execute)
    daemon = Daemon(
        settings,
        MemorySource(records(n)),
        [load_policy(path)],
        listener=out,
        synchronous_actions=True,
        watch_policies=watch,
    )
    return daemon, out, path


def test_a_dry_run_rule_decides_and_executes_nothing(tmp_path: Path) -> None:
    daemon, out, _ = make_daemon(tmp_path, POLICY.replace("    labels: {team: ml}\n", "    dry_run: true\n"))
    daemon.run()
    daemon.close()
    dry = out.of("decision", rule="shifting")
    assert dry and all(d["dry_run"] for d in dry)
    assert {a["state"] for a in out.of("action", rule="shifting")} == {"skipped"}
    assert {a["state"] for a in out.of("action", rule="degraded")} == {"done"}, "other rules still run"
    alerts = [orjson.loads(line) for line in (tmp_path / "state" / "alerts.jsonl").read_bytes().splitlines()]
    assert {a["rule"] for a in alerts} == {"degraded"}


def test_the_daemons_dry_run_executes_no_rule(tmp_path: Path) -> None:
    daemon, out, _ = make_daemon(tmp_path, execute=False)
    daemon.run()
    daemon.close()
    assert out.of("decision", rule="shifting") and out.of("decision", rule="degraded")
    assert {a["state"] for a in out.of("action")} == {"skipped"}
    assert not (tmp_path / "state" / "alerts.jsonl").exists() or not (tmp_path / "state" / "alerts.jsonl").read_text()


def test_run_dry_run_on_the_command_line(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        POLICY.replace("do: alert", "do: retrain", 1) + "actions:\n  retrain:\n"
        '    train: {entrypoint: "driftwarden.examples.credit.train:train"}\n'
    )
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(records(2200)) + b"\n")
    result = CliRunner().invoke(
        main,
        [
            "run",
            "--policy",
            str(policy),
            "--events",
            str(events),
            "--dry-run",
            "--json",
            "--state-dir",
            str(tmp_path / "state"),
            "--log-level",
            "error",
        ],
    )
    assert result.exit_code == 0, result.output
    lines = json_lines(result.stdout)
    retrains = [d for d in lines if d["type"] == "decision" and d["action_type"] == "retrain"]
    assert retrains
    assert {a["state"] for a in lines if a["type"] == "action"} == {"skipped"}
    assert lines[-1]["type"] == "summary" and lines[-1]["decisions"] == len(
        [d for d in lines if d["type"] == "decision"]
    )


SPAN_POLICY = """\
version: 1
model: m
monitors:
  perf: {kind: performance, window: {events: 100}, threshold: 0.8}
rules:
  - {name: degraded, when: "perf.drift", cooldown: 100ms, inhibited_by: [retrain], do: retrain}
actions:
  retrain:
    inhibits_for: 2500ms
    train: {entrypoint: "driftwarden.examples.credit.train:train", params: {max_iter: 5}}
    data: {last: 200}
"""


def span_records(n: int = 1200) -> list[bytes]:
    """100 events a second of event time; predictions wrong half the time from event 400 on."""
    rng = np.random.default_rng(5)
    out = []
    for i in range(n):
        label = int(rng.integers(0, 2))
        wrong = i >= 400 and rng.random() < 0.5
        prediction = 1 - label if wrong else label
        out.append(
            orjson.dumps(
                {
                    "model": "m",
                    "id": f"p{i}",
                    "ts": T0 + i / 100,
                    "features": {"x": float(rng.normal())},
                    "prediction": prediction,
                    "label": label,
                }
            )
        )
    return out


def test_inhibition_is_in_event_time_paced_unpaced_and_replay_decide_alike(tmp_path: Path) -> None:
    """Issue 13 item 9: with real retrains running (a trainer subprocess takes a second or more,
    i.e. the whole stream unpaced but a few windows paced), the decisions are replay's."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(SPAN_POLICY)
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(span_records()) + b"\n")

    def lines(*args: str) -> list[dict[str, Any]]:
        proc = run_cli(*args, "--policy", str(policy), "--events", str(events), "--json", cwd=tmp_path)
        return json_lines(proc.stdout)

    def decided(out: list[dict[str, Any]]) -> list[int]:
        return [d["at"] for d in out if d["type"] == "decision"]

    replayed = decided(lines("replay"))
    # perf drifts at every window from event 499 on; each decision mutes the rule for 2.5 s = 250 events.
    assert replayed == [499, 799, 1099]
    unpaced = lines("run", "--log-level", "error", "--state-dir", str(tmp_path / "unpaced"))
    paced = lines("run", "--log-level", "error", "--state-dir", str(tmp_path / "paced"), "--pace", "4")  # 3 s
    assert decided(unpaced) == decided(paced) == replayed
    for out in (unpaced, paced):  # the retrains really ran; each outcome's event position is recorded
        ends = {a["at"]: a for a in out if a["type"] == "action" and a["state"] in ("promoted", "rejected")}
        assert sorted(ends) == replayed, [(a["at"], a["state"], a.get("reason")) for a in out if a["type"] == "action"]
        assert all(a["observed_at"] > at for at, a in ends.items())


def test_a_changed_policy_is_swapped_in_between_batches_keeping_unchanged_monitors(tmp_path: Path) -> None:
    baseline, base_out, _ = make_daemon(tmp_path / "a", n=3000)
    baseline.run()
    baseline.close()
    daemon, out, path = make_daemon(tmp_path / "b", watch=True)
    daemon.run(count=1000)
    path.write_text(POLICY.replace("threshold: 0.8", "threshold: 0.7").replace("for: 3 windows", "for: 2 windows"))
    daemon.run()
    daemon.close()
    [reload] = out.of("policy")
    assert (reload["state"], reload["model"], reload["kept"]) == ("reloaded", "m", ["shift"])
    assert daemon.policies["m"].spec.monitors["perf"].threshold == 0.7
    assert daemon.actions.policies["m"] is daemon.policies["m"], "the action runner sees the new policy"
    # The unchanged ADWIN carried its state: its alarms are exactly those of an uninterrupted run.
    assert [s["at"] for s in out.of("signal", monitor="shift")] == [
        s["at"] for s in base_out.of("signal", monitor="shift")
    ]
    # The changed performance monitor started afresh at the reload: its first window ends 100 labels later.
    perf = [s["window_end"] for s in out.of("signal", monitor="perf")]
    assert perf[:10] == [100 * k for k in range(1, 11)] and perf[10] == 1100


def test_an_invalid_change_is_refused_and_the_old_policy_keeps_running(tmp_path: Path) -> None:
    baseline, base_out, _ = make_daemon(tmp_path / "a")
    baseline.run()
    baseline.close()
    daemon, out, path = make_daemon(tmp_path / "b", watch=True)
    running = daemon.policies["m"]
    daemon.run(count=1000)
    path.write_text(
        POLICY.replace('when: "perf.drift"', 'when: "perf.drift &&"').replace("cooldown: 20m", "cooldown: 20 min")
    )
    daemon.run(count=1000)
    [refused] = out.of("policy")
    assert refused["state"] == "refused"
    assert refused["errors"] == [
        f"{path}:13:25: rules[1].when: CEL: syntax error: mismatched input '<EOF>' expecting {{'[', '{{', '(', '.', "
        "'-', '!', 'true', 'false', 'null', NUM_FLOAT, NUM_INT, NUM_UINT, STRING, BYTES, IDENTIFIER}",
        f"{path}:15:15: rules[1].cooldown: not a duration: '20 min' (use a number and a unit: 30s, 10m, 6h, 1d, 1w)",
    ]
    assert daemon.policies["m"] is running and daemon.pipelines["m"].policy is running
    daemon.run(count=200)
    assert len(out.of("policy")) == 1, "refused once, not again until the file changes"
    path.write_text(POLICY.replace("cooldown: 20m", "cooldown: 30m"))
    daemon.run()
    daemon.close()
    assert [p["state"] for p in out.of("policy")] == ["refused", "reloaded"]
    assert out.of("policy")[1]["kept"] == ["shift", "perf"]
    # Nothing but a cooldown changed and no monitor restarted: decisions equal the uninterrupted run's.
    assert [(d["rule"], d["at"]) for d in out.of("decision")] == [(d["rule"], d["at"]) for d in base_out.of("decision")]


def test_a_file_that_now_watches_another_model_is_refused(tmp_path: Path) -> None:
    daemon, out, path = make_daemon(tmp_path, watch=True, n=500)
    daemon.run(count=250)
    path.write_text(POLICY.replace("model: m", "model: other"))
    daemon.run()
    daemon.close()
    [refused] = out.of("policy")
    assert refused["state"] == "refused" and "restart the daemon" in refused["errors"][0]
    assert daemon.policies["m"].model == "m"


def test_a_restart_resumes_with_the_changed_policy_keeping_unchanged_monitors(tmp_path: Path) -> None:
    daemon, _, path = make_daemon(tmp_path, n=3000)
    daemon.run(count=1000)
    daemon.close()
    path.write_text(POLICY.replace("threshold: 0.8", "threshold: 0.7"))
    again, _, _ = make_daemon(tmp_path, POLICY.replace("threshold: 0.8", "threshold: 0.7"))
    engine = again.pipelines["m"].engine
    assert engine.latest["shift"]["ready"] == (engine.latest["shift"]["at"] >= 0)
    assert engine.latest["perf"]["ready"] is False, "perf changed: it starts afresh"
    assert engine.events == 1000
    again.close()


@pytest.mark.parametrize("edit", ["touch", "same-content"])
def test_touching_a_file_without_changing_it_reloads_nothing(tmp_path: Path, edit: str) -> None:
    daemon, out, path = make_daemon(tmp_path, watch=True, n=500)
    daemon.run(count=250)
    path.write_text(path.read_text())
    daemon.run()
    daemon.close()
    assert out.of("policy") == []


def test_alerts_carry_the_rules_severity_labels_and_annotations(tmp_path: Path) -> None:
    daemon, out, _ = make_daemon(
        tmp_path,
        POLICY.replace("    labels: {team: ml}\n", "    labels: {team: ml}\n    annotations: {summary: x moved}\n"),
    )
    daemon.run()
    daemon.close()
    alerts = [orjson.loads(line) for line in (tmp_path / "state" / "alerts.jsonl").read_bytes().splitlines()]
    shifting = [a for a in alerts if a["rule"] == "shifting"]
    assert shifting and len(shifting) == len(out.of("decision", rule="shifting"))
    assert all(
        (a["severity"], a["labels"], a["annotations"]) == ("critical", {"team": "ml"}, {"summary": "x moved"})
        for a in shifting
    )
    assert {a["severity"] for a in alerts if a["rule"] == "degraded"} == {"warning"}
