"""SIGTERM and SIGINT stop `driftwarden run` after the current batch: checkpointed, summary printed, exit 0."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from driftwarden.daemon.state.store import Store

from tests.conftest import ROOT, json_lines


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_gracefully_and_restart_resumes(tmp_path: Path, sig: signal.Signals) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text(
        "\n".join(f'{{"model": "m", "id": {i}, "ts": {i}, "prediction": 1, "label": {i % 2}}}' for i in range(400))
        + "\n"
    )
    policy = tmp_path / "p.yaml"
    policy.write_text("version: 1\nmodel: m\nmonitors:\n  e: {kind: adwin, series: error}\n")
    state = tmp_path / "state"
    args = [
        sys.executable,
        "-m",
        "driftwarden.daemon.cli",
        "run",
        "--policy",
        str(policy),
        "--events",
        str(events),
        "--state-dir",
        str(state),
        "--json",
        "--log-level",
        "info",
    ]
    # pace 20: 20 s of event time per second, so 400 events take 20 s unless stopped.
    proc = subprocess.Popen(
        [*args, "--pace", "20"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 60
    while not (state / "state.db").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.5)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    assert "stopping after the current batch" in err
    summary = json_lines(out)[-1]
    assert summary["type"] == "summary" and 0 < summary["records"] < 400
    store = Store(state / "state.db")
    assert store.next_index() == summary["records"]
    store.close()
    rest = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
    assert json_lines(rest.stdout)[-1]["records"] == 400 - summary["records"]


def test_sigterm_during_start_up_stops_cleanly(tmp_path: Path) -> None:
    """The handlers are installed before the daemon is built: a SIGTERM while it starts ends the run with exit 0
    and a checkpointed, empty state (before, the default handler killed it: exit -15)."""
    events = tmp_path / "events.jsonl"
    events.write_text('{"model": "m", "id": 1, "ts": 1, "prediction": 1}\n')
    policy = tmp_path / "p.yaml"
    policy.write_text("version: 1\nmodel: m\nmonitors:\n  e: {kind: adwin, series: error}\n")
    state = tmp_path / "state"
    args = ["run", "--policy", str(policy), "--events", str(events), "--state-dir", str(state), "--follow"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "driftwarden.daemon.cli", *args, "--json", "--log-level", "debug"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        if "starting up" in line:
            proc.send_signal(signal.SIGTERM)
            break
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err[-3000:]
    assert json_lines(out)[-1]["type"] == "summary"
