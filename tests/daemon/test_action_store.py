"""Action records in the store: the persisted state strings, which actions count as unfinished
(what a restart recovers and ``driftwarden status`` lists), the typed record, read-only access."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from driftwarden.daemon.state.store import ActionRecord, Intent, Store
from driftwarden.deploy.states import OUTCOME_STATES, TERMINAL_STATES, ActionState

PERSISTED = [
    "pending",
    "training",
    "shadowing",
    "evaluating",
    "promoted",
    "rejected",
    "deploying",
    "deployed",
    "verifying",
    "verified",
    "rolling_back",
    "rolled_back",
    "failed",
    "skipped",
    "done",
    "handed_over",
]
"""The strings state.db holds: a store written by an earlier daemon must keep reading."""


def intent(key: str, at: int = 1, type: str = "retrain") -> Intent:
    return Intent(key, "m", "r", "retrain", type, at, 100.0 + at, {"reason": "why"})


def test_state_values_are_the_persisted_strings() -> None:
    assert [s.value for s in ActionState] == PERSISTED
    assert TERMINAL_STATES < set(ActionState) and OUTCOME_STATES < set(ActionState)


def test_promoted_and_deployed_are_not_terminal() -> None:
    # promoted is followed by a deploy when the policy has a target, deployed by a verification
    # when it has rollback_if: only the record (or the policy) says whether anything follows.
    assert not {ActionState.PROMOTED, ActionState.DEPLOYED} & TERMINAL_STATES
    assert TERMINAL_STATES - OUTCOME_STATES == {ActionState.DONE, ActionState.SKIPPED, ActionState.HANDED_OVER}


def test_new_intent_is_a_pending_record_with_its_fields(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    store.checkpoint({}, 5, {}, [intent("m/r/1", at=3)])
    record = store.action("m/r/1")
    assert isinstance(record, ActionRecord)
    assert (record.key, record.model, record.rule, record.action, record.type, record.at, record.ts) == (
        "m/r/1",
        "m",
        "r",
        "retrain",
        "retrain",
        3,
        103.0,
    )
    assert record.state is ActionState.PENDING and record.version is None and record.attempts == 0
    assert record.info == {"reason": "why"} and record.created <= record.updated
    store.update_action("m/r/1", ActionState.TRAINING, {"attempt": 1}, attempt=True)
    store.update_action("m/r/1", ActionState.PROMOTED, {"version": "v0002"}, version="v0002")
    record = store.action("m/r/1")
    assert record is not None
    assert (record.state, record.version, record.attempts) == (ActionState.PROMOTED, "v0002", 1)
    assert record.info == {"reason": "why", "attempt": 1, "version": "v0002"}
    store.close()
    raw = sqlite3.connect(tmp_path / "state.db").execute("SELECT state, typeof(state) FROM actions").fetchall()
    assert raw == [("promoted", "text")]


def test_unfinished_actions_are_those_a_restart_acts_on(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    store.checkpoint({}, 0, {}, [intent(f"m/{s}/1", at=i) for i, s in enumerate(PERSISTED)])
    for s in PERSISTED:
        store.update_action(f"m/{s}/1", ActionState(s), {})
    store.checkpoint({}, 0, {}, [intent("m/verify-due/1", at=99), intent("m/verify-started/1", at=99)])
    store.update_action("m/verify-due/1", ActionState.DEPLOYED, {"verify_window": 100})
    store.update_action("m/verify-started/1", ActionState.DEPLOYED, {"verify_window": 100})
    store.update_action("m/verify-started/1", ActionState.DEPLOYED, {"verify": {"after": 7, "window": 100}})

    unfinished = {a.key.split("/")[1] for a in store.unfinished_actions()}
    assert unfinished == {
        "pending",
        "training",
        "shadowing",
        "evaluating",
        "promoted",  # the runner decides with the policy: a deploy target follows it
        "deploying",
        "verifying",
        "rolling_back",
        "verify-due",  # deployed, the verification not yet started
    }
    assert len(store.actions()) == len(PERSISTED) + 2
    store.close()


def test_a_state_this_version_does_not_know_stays_readable_and_unfinished(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    store.checkpoint({}, 0, {}, [intent("m/r/1"), intent("m/a/2", at=2, type="alert")])
    store.update_action("m/r/1", "canarying", {})  # type: ignore[arg-type] - written by a newer daemon
    (record,) = store.unfinished_actions()[:1]
    assert record.state == "canarying" and not isinstance(record.state, ActionState)
    assert not record.finished
    assert [a.key for a in store.actions(type="alert")] == ["m/a/2"]
    store.close()


def test_readonly_store_reads_beside_the_writer(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    sqlite3.connect(path).close()  # the file exists, the daemon has not created its tables yet
    with pytest.raises(sqlite3.OperationalError):
        Store(path, readonly=True)
    writer = Store(path)
    writer.checkpoint({"file:a": 3}, 3, {}, [intent("m/r/1")])
    reader = Store(path, readonly=True)
    assert reader.next_index() == 3 and [a.key for a in reader.unfinished_actions()] == ["m/r/1"]
    writer.update_action("m/r/1", ActionState.FAILED, {"reason": "x"})
    assert reader.unfinished_actions() == [] and reader.action("m/r/1").state == "failed"  # type: ignore[union-attr]
    with pytest.raises(sqlite3.OperationalError):
        reader.update_action("m/r/1", ActionState.DONE)
    reader.close()
    writer.close()
