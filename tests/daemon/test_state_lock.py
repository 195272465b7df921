"""One daemon per state folder: a second `driftwarden run` on it exits at once, naming the folder and the holder."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from driftwarden.daemon.cli.commands import EXIT_LOCKED
from driftwarden.daemon.state.lock import LOCK_FILE

from tests.conftest import run_cli

POLICY = "version: 1\nmodel: m\nmonitors:\n  e: {kind: adwin, series: error}\n"
START_TIMEOUT_S = 120  # a loaded CI machine can take this long to import the daemon


def _events(path: Path, n: int = 200) -> Path:
    path.write_text(
        "".join(f'{{"model": "m", "id": {i}, "ts": {i}, "prediction": 1, "label": {i % 2}}}\n' for i in range(n))
    )
    return path


def _follow(tmp_path: Path, state: Path) -> subprocess.Popen[str]:
    policy = tmp_path / "p.yaml"
    policy.write_text(POLICY)
    args = ["run", "--policy", str(policy), "--events", str(_events(tmp_path / "e.jsonl")), "--follow"]
    return subprocess.Popen(
        [sys.executable, "-m", "driftwarden.daemon.cli", *args, "--state-dir", str(state), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_lock(state: Path, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not (state / LOCK_FILE).exists() or not (state / LOCK_FILE).read_text():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the first daemon never took its lock"
        time.sleep(0.2)
    deadline = time.monotonic() + START_TIMEOUT_S
    while not (state / "state.db").exists():  # started up: its store is open
        assert time.monotonic() < deadline
        time.sleep(0.2)


def test_a_second_daemon_on_one_state_folder_exits_naming_the_holder(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = _follow(tmp_path, state)
    try:
        _wait_for_lock(state, first)
        policy = tmp_path / "p.yaml"
        second = run_cli(
            "run", "--policy", str(policy), "--events", str(tmp_path / "e.jsonl"), "--state-dir", str(state),
            check=False,
        )  # fmt: skip
        assert second.returncode == EXIT_LOCKED, second.stdout + second.stderr
        assert str(state) in second.stderr and f"process {first.pid}" in second.stderr
        # Read-only commands still work beside the running daemon.
        status = run_cli("status", "--state-dir", str(state), check=False)
        assert status.returncode == 0, status.stdout + status.stderr
        assert first.poll() is None, "the first daemon keeps running"
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=START_TIMEOUT_S)


def test_the_lock_of_a_killed_daemon_does_not_block_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = _follow(tmp_path, state)
    _wait_for_lock(state, first)
    first.kill()
    first.communicate(timeout=START_TIMEOUT_S)
    again = run_cli(
        "run", "--policy", str(tmp_path / "p.yaml"), "--events", str(tmp_path / "e.jsonl"), "--state-dir", str(state),
        "--json",
    )  # fmt: skip
    assert '"type":"summary"' in again.stdout
