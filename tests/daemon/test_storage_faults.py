"""Issue 13 item 7: a full disk or a read-only folder ends `driftwarden run` with one line and exit 74;
the state is as of the last checkpoint and a restart writes every dead letter exactly once.

The full disk is real: a small tmpfs mounted for the test (root and mount(2) needed, else skipped).
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from driftwarden.daemon.config import Settings
from driftwarden.daemon.io.sources import MemorySource
from driftwarden.daemon.runtime import Daemon
from driftwarden.daemon.state.faults import EXIT_IO
from driftwarden.daemon.state.store import Store
from driftwarden.policies.loader import load_policy

from tests.conftest import run_cli

POLICY = "version: 1\nmodel: m\nmonitors:\n  perf: {kind: performance, window: {events: 50}, threshold: 0.5}\n"
DISK = "8m"
"""The tmpfs: room for a store and a few checkpoints, filled up by a ballast file when a test wants it full."""


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """A small real file system of its own (tmpfs), unmounted afterwards."""
    mount = tmp_path / "vol"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("a real full disk needs root to mount a small tmpfs")
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK}", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(folder: Path) -> Path:
    """Fill the file system of ``folder`` to the last byte; the ballast file, to delete to free it."""
    ballast = folder / "ballast"
    with contextlib.suppress(OSError), ballast.open("wb", buffering=0) as f:
        while True:
            f.write(b"\0" * 65536)
    with contextlib.suppress(OSError), ballast.open("ab", buffering=0) as f:
        while True:
            f.write(b"\0")
    return ballast


def records(n: int = 400, bad: int = 20, labels: bool = False) -> list[bytes]:
    """``n`` good events of model m with ``bad`` records among them (each breaks the contract)."""
    out = []
    for i in range(n):
        event: dict = {"model": "m", "id": i, "ts": i, "prediction": i % 2}
        if labels:
            event["label"] = (i // 3) % 2
        out.append(orjson.dumps(event))
    for k in range(bad):
        out.insert(10 + k * (n // bad), orjson.dumps({"model": "m", "id": f"bad{k}", "features": [k]}))
    return out


def daemon(state: Path, dead_letters: Path, events: list[bytes], policy: Path) -> Daemon:
    settings = Settings(state_dir=state, dead_letters=dead_letters, execute=False, batch_size=1000)
    return Daemon(settings, MemorySource(events), [load_policy(policy)])


def letters(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_a_full_disk_at_the_checkpoint_then_a_restart_gives_each_dead_letter_once(disk: Path, tmp_path: Path) -> None:
    """The issue's case: 20 bad records are appended, the checkpoint transaction fails (SQLite: database
    or disk is full); after the restart the file holds exactly 20 dead letters, one per record."""
    policy = tmp_path / "p.yaml"
    policy.write_text(POLICY)
    dead = tmp_path / "dead_letters.jsonl"  # on the roomy disk: the append succeeds, the store's write fails
    events = records()
    first = daemon(disk / "state", dead, events, policy)
    ballast = fill(disk)
    with pytest.raises(Exception) as failed:
        first.run()
    first.close()
    from driftwarden.daemon.state.faults import storage_fault

    assert storage_fault(failed.value) is not None and "disk full" in storage_fault(failed.value)
    assert len(letters(dead)) == 20, "appended before the failed checkpoint"
    ballast.unlink()
    second = daemon(disk / "state", dead, events, policy)
    stats = second.run()
    second.close()
    assert stats.records == len(events), "nothing was checkpointed: the whole stream is replayed"
    got = letters(dead)
    assert len(got) == 20 and sorted(d["offset"] for d in got) == sorted({d["offset"] for d in got})
    store = Store(disk / "state" / "state.db", readonly=True)
    assert store.pipeline_state("m")["engine"]["counts"][:3] == [400, 0, 20], "each event counted once"
    store.close()


def _run(state: Path, events: Path, policy: Path) -> subprocess.CompletedProcess[str]:
    config = policy.with_name("config.yaml")
    config.write_text("checkpoint_records: 1000\n")  # a checkpoint every batch: the disk fills between two
    return run_cli(
        "run", "--config", str(config), "--policy", str(policy), "--events", str(events), "--state-dir", str(state),
        "--json", check=False,
    )  # fmt: skip


def test_run_on_a_full_disk_exits_74_with_one_line_and_resumes_once_there_is_room(disk: Path, tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text(POLICY)
    events = tmp_path / "events.jsonl"
    stream = records(n=20_000, labels=True)
    events.write_bytes(b"\n".join(stream) + b"\n")
    state = disk / "state"
    ballast = fill(disk)
    os.truncate(ballast, max(0, ballast.stat().st_size - 300_000))  # room for a few checkpoints, not all
    full = _run(state, events, policy)
    assert full.returncode == EXIT_IO, full.stderr[-2000:]
    last = full.stderr.strip().splitlines()[-1]
    assert last.startswith("driftwarden: disk full: ") and "stopped at the last checkpoint" in last, full.stderr
    assert "Traceback" not in full.stderr
    store = Store(state / "state.db", readonly=True)
    checkpointed = store.positions()[f"file:{events.name}"]
    store.close()
    assert 0 < checkpointed < len(stream), "it stopped mid-stream, at its last checkpoint"
    again = _run(state, events, policy)  # still full: the same line, not a crash loop of tracebacks
    assert again.returncode == EXIT_IO and "Traceback" not in again.stderr, again.stderr[-2000:]
    ballast.unlink()
    resumed = _run(state, events, policy)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    store = Store(state / "state.db", readonly=True)
    assert store.pipeline_state("m")["engine"]["counts"][:3] == [20_000, 20_000, 20], "nothing lost, nothing twice"
    store.close()
    got = letters(state / "dead_letters.jsonl")
    assert len(got) == 20 and len({d["offset"] for d in got}) == 20


def test_run_on_a_read_only_state_folder_exits_74_naming_it(disk: Path, tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text(POLICY)
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(records(n=200)) + b"\n")
    state = disk / "state"
    assert _run(state, events, policy).returncode == 0
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    proc = _run(state, events, policy)
    assert proc.returncode == EXIT_IO, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"driftwarden: read-only file system: {state}"), last


def test_storage_faults_are_told_from_other_errors() -> None:
    import sqlite3

    from driftwarden.daemon.state.faults import storage_fault

    assert storage_fault(OSError(errno.EACCES, "Permission denied", "/s/state.db")) == (
        "permission denied: /s/state.db (Permission denied)"
    )
    assert storage_fault(OSError("pyarrow: IOError: No space left on device")) is not None
    assert storage_fault(sqlite3.OperationalError("no such table: x")) is None
    assert storage_fault(OSError(errno.ECONNREFUSED, "Connection refused")) is None
