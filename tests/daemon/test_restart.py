"""A daemon stopped mid-stream and restarted makes exactly the decisions of an uninterrupted run,
and never retrains twice — whether it was stopped cleanly or killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from driftwarden.daemon.state.store import ActionRecord, Store

from tests.conftest import ROOT, json_lines, run_cli

POLICY = ROOT / "examples" / "credit" / "policy.yaml"


def decisions(lines: list[dict]) -> list[tuple[str, int, str]]:
    return [(d["rule"], d["at"], d["key"]) for d in lines if d["type"] == "decision"]


def run_json(events: Path, state: Path, *extra: str) -> list[dict]:
    return json_lines(
        run_cli(
            "run",
            "--policy",
            str(POLICY),
            "--events",
            str(events),
            "--state-dir",
            str(state),
            "--json",
            "--log-level",
            "warning",
            *extra,
        ).stdout
    )


@pytest.fixture(scope="module")
def uninterrupted(
    demo_run: tuple[Path, list[dict]], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, list[dict]]:
    out, _ = demo_run
    state = tmp_path_factory.mktemp("whole")
    return out / "events.jsonl", run_json(out / "events.jsonl", state) + [{"type": "state", "dir": str(state)}]


def retrain_actions(state: Path) -> list[ActionRecord]:
    store = Store(state / "state.db")
    try:
        return [a for a in store.actions() if a.type == "retrain"]
    finally:
        store.close()


def test_uninterrupted_run_retrains_once(uninterrupted: tuple[Path, list[dict]]) -> None:
    _, lines = uninterrupted
    state = Path(lines[-1]["dir"])
    retrains = retrain_actions(state)
    assert len(retrains) == 1
    assert retrains[0].state == "deployed"
    assert retrains[0].attempts == 1
    assert lines[-2]["type"] == "summary" and lines[-2]["records"] == 32_000


def test_clean_stop_and_restart_gives_the_same_decisions(
    uninterrupted: tuple[Path, list[dict]], tmp_path: Path
) -> None:
    events, whole = uninterrupted
    first = run_json(events, tmp_path, "--count", "18000")
    assert first[-1]["records"] == 18_000
    second = run_json(events, tmp_path)
    assert second[-1]["records"] == 32_000 - 18_000
    assert decisions(first) + decisions(second) == decisions(whole)
    assert len(retrain_actions(tmp_path)) == 1


def test_sigkill_and_restart_gives_the_same_decisions(uninterrupted: tuple[Path, list[dict]], tmp_path: Path) -> None:
    events, whole = uninterrupted
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "driftwarden.daemon.cli",
            "run",
            "--policy",
            str(POLICY),
            "--events",
            str(events),
            "--state-dir",
            str(tmp_path),
            "--json",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    db = tmp_path / "state.db"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # kill once a few checkpoints are down, mid-stream
        if db.exists():
            store = Store(db)
            done = store.next_index()
            store.close()
            if done >= 6_000:
                break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    out, _ = proc.communicate(timeout=30)
    killed = [line for line in json_lines(out) if line["type"] != "summary"]
    assert not any(line["type"] == "summary" for line in json_lines(out)), "the daemon finished before the kill"
    rest = run_json(events, tmp_path)
    # The record is the audit log: a killed process's stdout loses the lines of its last checkpointed batch
    # (they are printed after the checkpoint), while the audit holds every decision exactly once.
    assert decisions(audited(tmp_path)) == decisions(whole)
    assert set(decisions(killed) + decisions(rest)) <= set(decisions(whole))
    assert len(retrain_actions(tmp_path)) == 1


def audited(state: Path) -> list[dict]:
    store = Store(state / "state.db")
    try:
        return [{"type": e["type"], "rule": e["rule"], "at": e["at"], "key": e["key"]} for e in store.audit(limit=10**6)
                if e["type"] == "decision"]  # fmt: skip
    finally:
        store.close()
