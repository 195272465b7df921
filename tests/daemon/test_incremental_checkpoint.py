"""Incremental checkpoints: an idle model's state is not written again, a busy model's windows are
written as the chunks added since the last checkpoint, and a restart resumes exactly."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import orjson
import pytest
from driftwarden.daemon import runtime
from driftwarden.daemon.config import Settings
from driftwarden.daemon.io.sources import MemorySource, Record
from driftwarden.daemon.runtime import Daemon
from driftwarden.daemon.state.store import SCHEMA_VERSION, Store
from driftwarden.policies.loader import load_policy

POLICY = """version: 1
models: 'm*'
monitors:
  inputs: {kind: feature_drift, features: all, window: {events: 400}}
"""


def records(model: str, start: int, n: int, offset: int) -> list[Record]:
    return [
        Record(
            orjson.dumps({"model": model, "id": f"{model}-{i}", "ts": 1.7e9 + i, "features": {"x": i % 7 * 1.0}}),
            "file:e",
            offset + k,
        )
        for k, i in enumerate(range(start, start + n))
    ]


def rows(db: Path) -> tuple[dict[str, int], dict[str, set[str]]]:
    """rowid of each model's state (INSERT OR REPLACE gives a rewritten row a new one), and its parts."""
    with sqlite3.connect(db) as c:
        states = {k: r for k, r in c.execute("SELECT key, rowid FROM checkpoint WHERE key LIKE 'pipeline:%'")}
        parts: dict[str, set[str]] = {}
        for model, key in c.execute("SELECT model, key FROM parts"):
            parts.setdefault(model, set()).add(key)
    return states, parts


def test_an_idle_model_is_not_written_and_a_busy_one_writes_only_its_new_chunks(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(POLICY)
    settings = Settings(state_dir=tmp_path / "state", execute=False)
    daemon = Daemon(settings, MemorySource([]), [load_policy(tmp_path / "p.yaml")])
    daemon.process(records("ma", 0, 100, 0) + records("mb", 0, 100, 100))
    daemon.write_checkpoint()
    states, parts = rows(settings.store_path)
    assert set(states) == {"pipeline:ma", "pipeline:mb"} and len(parts["ma"]) == 1

    daemon.process(records("ma", 100, 100, 200))  # mb is idle
    daemon.write_checkpoint()
    again, parts_again = rows(settings.store_path)
    assert again["pipeline:mb"] == states["pipeline:mb"], "the idle model's state is not written again"
    assert again["pipeline:ma"] != states["pipeline:ma"]
    assert parts_again["mb"] == parts["mb"]
    assert parts["ma"] < parts_again["ma"] and len(parts_again["ma"]) == 2, "one new chunk, the old one kept"
    daemon.process(records("ma", 200, 250, 300))  # closes the reference window: its chunks are no longer referred to
    daemon.write_checkpoint()
    _, parts_closed = rows(settings.store_path)
    assert not parts_closed["ma"] & parts_again["ma"], "parts no state refers to are deleted"
    expected = daemon.pipelines["ma"].snapshot(pending=False)
    daemon.close()

    restarted = Daemon(settings, MemorySource([]), [load_policy(tmp_path / "p.yaml")])
    assert orjson.loads(orjson.dumps(restarted.pipelines["ma"].snapshot(pending=False))) == orjson.loads(
        orjson.dumps(expected)
    )
    assert restarted.pipelines["mb"].engine.events == 100
    restarted.close()


@pytest.mark.parametrize("in_memory", [runtime.HELD_IN_MEMORY, 100], ids=["all-kept", "over-budget"])
def test_events_that_wait_for_more_of_their_model_are_stored_by_a_checkpoint_and_resumed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, in_memory: int
) -> None:
    """With many models a model's events wait (past the checkpoint's positions) for more of them; a
    checkpoint stores them instead of running them, and a daemon that stops without a last
    checkpoint (a crash) resumes with them (read back from the store as their model runs): every
    event counted once, the states as in one run. Past ``HELD_IN_MEMORY`` waiting events (100: 140
    at each checkpoint) the models with the most run at the checkpoint."""
    monkeypatch.setattr(runtime, "HELD_IN_MEMORY", in_memory)
    monkeypatch.setattr(runtime, "COALESCE_SHARE", 1)  # only a whole batch runs at once: two models' halves wait
    (tmp_path / "p.yaml").write_text(POLICY)
    batches = [records("ma", 10 * k, 10, 20 * k) + records("mb", 10 * k, 10, 20 * k + 10) for k in range(30)]

    def run(state: Path, upto: int) -> Daemon:
        """A daemon over the batches before ``upto`` (those its checkpoint has are skipped)."""
        daemon = Daemon(Settings(state_dir=state, execute=False), MemorySource([]), [load_policy(tmp_path / "p.yaml")])
        for k, batch in enumerate(batches[:upto]):
            daemon.process(batch, caught_up=False)  # a full poll: the source has more
            if k % 7 == 6:
                daemon.write_checkpoint(catch_up=False)  # as when a checkpoint is due
        return daemon

    whole = run(tmp_path / "whole", len(batches))
    assert whole.pipelines["ma"].engine.events < 300, "events wait for more of their model"
    ran = sum(p.engine.events for p in whole.pipelines.values())
    assert (ran > 0) == (in_memory < 300), "over the budget, models run at a checkpoint; else they all wait"
    with sqlite3.connect(whole.settings.store_path) as c:
        assert c.execute("SELECT count(*) FROM waiting").fetchone()[0] > 0, "the checkpoint stored the waiting ones"
    run(tmp_path / "crashed", 23).close()  # no last checkpoint: what the one at batch 20 stored is all that survives
    crashed = run(tmp_path / "crashed", len(batches))  # the source replays from that checkpoint's positions
    for daemon in (whole, crashed):
        daemon.write_checkpoint()  # runs every waiting event
    assert {m: p.engine.events for m, p in crashed.pipelines.items()} == {"ma": 300, "mb": 300}
    for model in ("ma", "mb"):
        assert orjson.loads(orjson.dumps(crashed.pipelines[model].snapshot())) == orjson.loads(
            orjson.dumps(whole.pipelines[model].snapshot())
        )
    with sqlite3.connect(crashed.settings.store_path) as c:
        assert c.execute("SELECT count(*) FROM waiting").fetchone()[0] == 0
    whole.close()
    crashed.close()


def test_the_waiting_events_of_a_version_3_store_are_counted_and_run_after_the_upgrade(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store of schema version 3 has no row count in ``waiting``: opening it adds the column (in
    one transaction with the version), and its uncounted entries are read once to count them."""
    monkeypatch.setattr(runtime, "COALESCE_SHARE", 1)  # only a whole batch runs at once: two models' halves wait
    (tmp_path / "p.yaml").write_text(POLICY)
    batches = [records("ma", 10 * k, 10, 20 * k) + records("mb", 10 * k, 10, 20 * k + 10) for k in range(12)]

    def run(state: Path, batches: list[list[Record]]) -> Daemon:
        daemon = Daemon(Settings(state_dir=state, execute=False), MemorySource([]), [load_policy(tmp_path / "p.yaml")])
        for batch in batches:
            daemon.process(batch, caught_up=False)
        return daemon

    whole = run(tmp_path / "whole", batches)
    whole.write_checkpoint()
    old = run(tmp_path / "old", batches[:6])
    old.write_checkpoint(catch_up=False)  # stores the waiting events
    old.close()
    db = tmp_path / "old" / "state.db"
    with sqlite3.connect(db) as c:  # as version 3 wrote it
        assert c.execute("SELECT count(*) FROM waiting").fetchone()[0] > 0
        c.execute("ALTER TABLE waiting DROP COLUMN n")
        c.execute("PRAGMA user_version = 3")
    store = Store(db)
    assert store.schema_version() == SCHEMA_VERSION == 4
    assert store.waiting_counts() == {"ma": None, "mb": None}
    store.close()
    upgraded = run(tmp_path / "old", batches[6:])
    upgraded.write_checkpoint()
    assert {m: p.engine.events for m, p in upgraded.pipelines.items()} == {"ma": 120, "mb": 120}
    for model in ("ma", "mb"):
        assert orjson.loads(orjson.dumps(upgraded.pipelines[model].snapshot())) == orjson.loads(
            orjson.dumps(whole.pipelines[model].snapshot())
        )
    whole.close()
    upgraded.close()


def test_a_model_with_a_large_share_of_a_full_poll_runs_at_once_and_one_among_many_waits(tmp_path: Path) -> None:
    """A model's events wait for more of them only when the batch is spread over many models (its call's cost is
    not shared yet), and never while its deploy waits for live rows to verify: one model of a full poll runs every
    batch; of ten models sharing it, none does, but the one whose verification watches."""
    (tmp_path / "p.yaml").write_text(POLICY)
    one = Daemon(
        Settings(state_dir=tmp_path / "one", execute=False), MemorySource([]), [load_policy(tmp_path / "p.yaml")]
    )
    for k in range(5):
        one.process(records("ma", 20 * k, 20, 20 * k), caught_up=False)
    assert one.pipelines["ma"].engine.events == 100
    one.close()
    models = [f"m{i}" for i in range(10)]
    many = Daemon(
        Settings(state_dir=tmp_path / "many", execute=False), MemorySource([]), [load_policy(tmp_path / "p.yaml")]
    )
    for k in range(5):
        many.process([r for i, m in enumerate(models) for r in records(m, 2 * k, 2, 20 * k + 2 * i)], caught_up=False)
    assert [many.pipelines[m].engine.events for m in models] == [0] * 10
    many.actions.windows.watch("m3/verify-v0002", "verify", after=0, size=100)  # m3's deploy waits for live rows
    many.process([r for i, m in enumerate(models) for r in records(m, 10, 2, 100 + 2 * i)], caught_up=False)
    assert [many.pipelines[m].engine.events for m in models] == [12 if m == "m3" else 0 for m in models]
    many.write_checkpoint()  # runs every waiting event
    assert [many.pipelines[m].engine.events for m in models] == [12] * 10
    many.close()
