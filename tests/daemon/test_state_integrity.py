"""Damaged state is found and named: one clear error and exit 65, never a traceback loop or a silent start from
zero; `driftwarden state check` reports it and `state repair` quarantines it, saying what was lost."""

from __future__ import annotations

import collections
import multiprocessing
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from driftwarden.daemon.cli.state import EXIT_CORRUPT
from driftwarden.daemon.state import store as store_module
from driftwarden.daemon.state.faults import storage_fault
from driftwarden.daemon.state.store import SCHEMA_VERSION, StateCorrupt, Store

from tests.conftest import run_cli

POLICY = "version: 1\nmodel: m\nmonitors:\n  e: {kind: adwin, series: error}\n"


def _run(tmp_path: Path, n: int = 300, start: int = 0) -> tuple[Path, object]:
    events = tmp_path / f"e{start}.jsonl"
    events.write_text(
        "".join(
            f'{{"model": "m", "id": {i}, "ts": {i}, "features": {{"x": {i}}}, "prediction": 1, "label": {i % 2}}}\n'
            for i in range(start, start + n)
        )
    )
    policy = tmp_path / "p.yaml"
    policy.write_text(POLICY)
    state = tmp_path / "state"
    proc = run_cli("run", "--policy", str(policy), "--events", str(events), "--state-dir", str(state), check=False)
    return state, proc


@pytest.fixture
def state(tmp_path: Path) -> Path:
    state, proc = _run(tmp_path)
    assert proc.returncode == 0, proc.stderr  # type: ignore[attr-defined]
    return state


def test_a_zero_length_store_is_refused_not_started_from_zero(tmp_path: Path, state: Path) -> None:
    (state / "state.db").write_bytes(b"")
    for suffix in ("-wal", "-shm"):
        (state / f"state.db{suffix}").unlink(missing_ok=True)
    _, proc = _run(tmp_path, start=300)
    assert proc.returncode == EXIT_CORRUPT  # type: ignore[attr-defined]
    assert "state.db: the database file is empty" in proc.stderr and "Traceback" not in proc.stderr  # type: ignore[attr-defined]


def test_a_garbled_store_gives_one_clear_error(tmp_path: Path, state: Path) -> None:
    for suffix in ("-wal", "-shm"):
        (state / f"state.db{suffix}").unlink(missing_ok=True)
    (state / "state.db").write_bytes(b"this is not sqlite" * 500)
    _, proc = _run(tmp_path, start=300)
    assert proc.returncode == EXIT_CORRUPT, proc.stderr  # type: ignore[attr-defined]
    assert "not a readable SQLite database" in proc.stderr and "Traceback" not in proc.stderr  # type: ignore[attr-defined]


def test_a_garbled_pipeline_entry_is_named_then_repaired(tmp_path: Path, state: Path) -> None:
    with sqlite3.connect(state / "state.db") as db:
        db.execute("UPDATE checkpoint SET value = ? WHERE key = 'pipeline:m'", (b'{"broken',))
    _, proc = _run(tmp_path, start=300)
    assert proc.returncode == EXIT_CORRUPT
    assert "checkpoint entry 'pipeline:m' is not valid JSON" in proc.stderr  # type: ignore[attr-defined]
    check = run_cli("state", "check", "--state-dir", str(state), check=False)
    assert check.returncode == EXIT_CORRUPT and "pipeline:m" in check.stdout
    repair = run_cli("state", "repair", "--state-dir", str(state))
    assert "lost the state of m" in repair.stdout
    assert run_cli("state", "check", "--state-dir", str(state)).returncode == 0
    _, again = _run(tmp_path, start=300)
    assert again.returncode == 0, again.stderr  # type: ignore[attr-defined]


def test_a_torn_buffer_segment_is_named_at_start(tmp_path: Path, state: Path) -> None:
    [segment] = sorted((state / "buffers" / "m").glob("*.json"))
    segment.write_bytes(segment.read_bytes()[:-40])  # cut short
    _, proc = _run(tmp_path, start=300)
    assert proc.returncode == EXIT_CORRUPT
    assert segment.name in proc.stderr and "torn" in proc.stderr  # type: ignore[attr-defined]
    repair = run_cli("state", "repair", "--state-dir", str(state))
    assert "300 labeled rows of m" in repair.stdout
    assert not segment.exists() and list((state / "quarantine").rglob(segment.name))


def test_a_garbled_buffer_segment_is_found_by_check(state: Path) -> None:
    [segment] = sorted((state / "buffers" / "m").glob("*.json"))
    data = bytearray(segment.read_bytes())
    data[10:20] = b"@@@@@@@@@@"
    segment.write_bytes(bytes(data))
    check = run_cli("state", "check", "--state-dir", str(state), check=False)
    assert check.returncode == EXIT_CORRUPT and segment.name in check.stdout


def test_schema_version_recorded_and_newer_refused(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    Store(db).close()
    assert Store(db).schema_version() == SCHEMA_VERSION
    with sqlite3.connect(db) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StateCorrupt, match="newer than this driftwarden"):
        Store(db)


def test_a_deleted_buffer_segment_is_named_by_check_and_at_start(tmp_path: Path, state: Path) -> None:
    """Issue 13 item 5: the checkpoint lists the segments, so one deleted from outside is found."""
    _, more = _run(tmp_path, start=300)  # a second segment
    assert more.returncode == 0, more.stderr  # type: ignore[attr-defined]
    first, second = sorted((state / "buffers" / "m").glob("*.json"))
    first.unlink()
    check = run_cli("state", "check", "--state-dir", str(state), check=False)
    assert check.returncode == EXIT_CORRUPT, check.stdout
    assert f"{first}: labeled-data segment is missing (deleted?)" in check.stdout
    assert "repair would lose 300 labeled rows of m" in check.stdout and second.name not in check.stdout
    repair = run_cli("state", "repair", "--state-dir", str(state))
    assert f"repaired {first}" in repair.stdout and "lost 300 labeled rows of m" in repair.stdout
    assert run_cli("state", "check", "--state-dir", str(state)).returncode == 0
    second.unlink()  # deleted again, and the daemon started: it says so (and carries on)
    _, started = _run(tmp_path, start=600)
    assert started.returncode == 0, started.stderr  # type: ignore[attr-defined]
    said = "".join(started.stderr.split())  # type: ignore[attr-defined]  # the console wraps long lines
    assert second.name in said and "ismissing(deleted?):its300rowsarelostforretraining" in said, said


def _open_new_stores(folder: str, rounds: int, barrier: Any, results: Any) -> None:
    """A process that opens store ``i`` of ``folder`` at the same moment as its siblings, for each round."""
    for i in range(rounds):
        barrier.wait()
        try:
            Store(Path(folder) / f"{i}.db").close()
            results.put("opened")
        except Exception as e:  # noqa: BLE001 - what the test counts
            results.put(f"{type(e).__name__}: {e}")


def test_processes_opening_a_new_store_at_the_same_moment_all_open_it(tmp_path: Path) -> None:
    """Two processes creating one store at once: SQLite refuses one of them without waiting (both want to
    write the new schema); that is a lock, not damage (it was reported as a damaged store, exit 65)."""
    ctx = multiprocessing.get_context("fork")
    workers, rounds = 3, 60
    barrier, results = ctx.Barrier(workers), ctx.Queue()
    procs = [
        ctx.Process(target=_open_new_stores, args=(str(tmp_path), rounds, barrier, results)) for _ in range(workers)
    ]
    for p in procs:
        p.start()
    outcomes = collections.Counter(results.get(timeout=60) for _ in range(workers * rounds))
    for p in procs:
        p.join(timeout=10)
    assert outcomes == {"opened": workers * rounds}, outcomes
    assert all(Store(tmp_path / f"{i}.db").schema_version() == SCHEMA_VERSION for i in range(rounds))


def test_a_store_locked_for_longer_than_the_open_waits_is_a_storage_fault_not_damage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "OPEN_BUSY_SECONDS", 0.3)
    monkeypatch.setattr(store_module, "BUSY_TIMEOUT_SECONDS", 0.05)
    path = tmp_path / "state.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process holds the new store for ever
    try:
        with pytest.raises(sqlite3.OperationalError) as refused:
            Store(path)
    finally:
        holder.rollback()
        holder.close()
    assert storage_fault(refused.value, str(path)) == f"locked by another process: {path} (database is locked)"
    Store(path).close()  # once the lock is gone it opens
