"""Damaged state is found and named: one clear error and exit 65, never a traceback loop or a silent start from
zero; `driftwarden state check` reports it and `state repair` quarantines it, saying what was lost."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from driftwarden.daemon.cli.state import EXIT_CORRUPT
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
