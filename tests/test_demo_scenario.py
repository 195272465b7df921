"""The demo's promise: drift is found after it happens and never before, one retrain per cooldown,
the candidate wins the gate and is deployed, and the model recovers."""

from __future__ import annotations

from pathlib import Path


def test_demo_json_starts_with_the_scenario_and_ends_with_a_summary(demo_run: tuple[Path, list[dict]]) -> None:
    _, lines = demo_run
    assert lines[0]["type"] == "scenario"
    assert lines[-1]["type"] == "summary"
    summary = lines[-1]
    assert summary["records"] == summary["events"] + summary["dead_letters"]
    assert summary["labels_joined"] == 16_000
    for line in lines:
        assert {"type", "model", "at", "ts"} <= line.keys()


def test_drift_signals_only_after_drift_at(demo_run: tuple[Path, list[dict]]) -> None:
    _, lines = demo_run
    drift_at = lines[0]["drift_at"]
    drifted = [s for s in lines if s["type"] == "signal" and s["drift"]]
    assert drifted, "the drift was never detected"
    assert min(s["at"] for s in drifted) >= drift_at
    # Windowed signals say which events they cover; none of the drifted windows ends before the onset.
    assert all(s["window_end"] > drift_at for s in drifted if s.get("window_end") is not None)
    # Every monitor kind of the policy noticed it.
    assert {s["monitor"] for s in drifted} == {"inputs", "errors", "accuracy"}


def test_one_retrain_promoted_and_deployed(demo_run: tuple[Path, list[dict]]) -> None:
    out, lines = demo_run
    retrains = [d for d in lines if d["type"] == "decision" and d["action_type"] == "retrain"]
    assert len(retrains) == 1, "cooldown of 6h (21,600 events of event time) allows one retrain"
    key = retrains[0]["key"]
    states = [a["state"] for a in lines if a["type"] == "action" and a["key"] == key]
    assert states == ["training", "evaluating", "promoted", "deploying", "deployed"]
    deployed = [a for a in lines if a["type"] == "action" and a["state"] == "deployed"][0]
    assert deployed["version"] == "v0002"
    assert deployed["candidate"]["accuracy"] > deployed["champion"]["accuracy"] + 0.02
    assert (out / "serving" / "credit" / "VERSION").read_text().strip() == "v0002"
    assert (out / "report.html").stat().st_size > 10_000


def test_accuracy_recovers_after_redeploy(demo_run: tuple[Path, list[dict]]) -> None:
    _, lines = demo_run
    acc = lines[-1]["demo"]["accuracy"]
    assert acc["before"] > 0.9
    assert acc["during"] < 0.7
    assert acc["after"] > acc["during"] + 0.3
