"""What a restart does with each unfinished action (daemon/actions/recovery.py): one row of the
table per record, and ``has_target`` asked only where the answer depends on it."""

from __future__ import annotations

from typing import Any

import pytest
from driftwarden.daemon.actions.recovery import Recovery, recovery_for
from driftwarden.daemon.state.store import ActionRecord
from driftwarden.deploy.states import ActionState


def record(state: str, **info: Any) -> ActionRecord:
    return ActionRecord("m/r/1", "m", "r", "retrain", "retrain", 7, 0.0, state, "v0002", 1, 0.0, 0.0, info)


@pytest.mark.parametrize(
    ("state", "info", "has_target", "expected"),
    [
        ("pending", {}, True, Recovery.RUN),
        ("training", {}, True, Recovery.RESUME_TRAINING),
        ("evaluating", {"on": "holdout"}, True, Recovery.RESUME_TRAINING),
        ("evaluating", {"on": "live"}, True, Recovery.FAIL_JUDGEMENT),
        ("promoted", {}, False, Recovery.NOTHING),
        ("promoted", {}, True, Recovery.FINISH_DEPLOY),
        ("deploying", {}, True, Recovery.FINISH_DEPLOY),
        ("rolling_back", {}, True, Recovery.REPEAT_ROLLBACK),
        ("shadowing", {"shadow_window": 50}, True, Recovery.WATCH_SHADOW),
        ("deployed", {"verify_window": 100}, True, Recovery.START_VERIFY),
        ("verifying", {"verify": {"after": 9, "window": 100}}, True, Recovery.WATCH_VERIFY),
        ("canarying", {}, True, Recovery.UNKNOWN),
    ],
)
def test_each_unfinished_state_has_its_recovery(
    state: str, info: dict[str, Any], has_target: bool, expected: Recovery
) -> None:
    asked: list[bool] = []

    def target() -> bool:
        asked.append(True)
        return has_target

    action = record(ActionState(state) if state in ActionState.__members__.values() else state, **info)
    assert not action.finished
    assert recovery_for(action, has_target=target) is expected
    assert bool(asked) == (state == "promoted"), "the policy is read only for a promoted action"
