"""What a restarted daemon does with an action it finds unfinished, observing what is really
there before acting (every decision ends with exactly one completed training or a recorded
permanent failure, never none because of a crash):

=============================================  ==============================================
the record says                                :class:`Recovery`
=============================================  ==============================================
``pending``                                    ``RUN``: it never started; run it now
``training``, ``evaluating`` (held-out gate)   ``RESUME_TRAINING``: the outcome the run stored
                                               is recorded if it ended; else the retrain runs
                                               again in its folder, which adopts its trainer
                                               (a finished one is judged by its exit record,
                                               a running one is waited for until its deadline)
                                               and trains again only when it vanished
``evaluating`` (on live rows, after shadow)    ``FAIL_JUDGEMENT``: the challenger was never
                                               served; clear its alias and fail
``promoted`` without a deploy target           ``NOTHING``: that is its final state
``promoted`` (with a target), ``deploying``    ``FINISH_DEPLOY``: the candidate is registered;
                                               deploy it (idempotent) and move the aliases
``rolling_back``                               ``REPEAT_ROLLBACK`` with the recorded versions
``shadowing``                                  ``WATCH_SHADOW``: keep waiting for live rows
``deployed``, verification due                 ``START_VERIFY``: its window starts now
``verifying``                                  ``WATCH_VERIFY`` with the recorded window
anything else (a newer daemon's state)         ``UNKNOWN``: the action fails
=============================================  ==============================================

>>> from driftwarden.daemon.state.store import ActionRecord
>>> def record(state, **info):
...     return ActionRecord("m/r/1", "m", "r", "retrain", "retrain", 1, 0.0, state, None, 1, 0.0, 0.0, info)
>>> [recovery_for(record(s), has_target=lambda: True).name for s in ("pending", "deploying", "canarying")]
['RUN', 'FINISH_DEPLOY', 'UNKNOWN']
>>> recovery_for(record("evaluating", on="live"), has_target=lambda: True).name
'FAIL_JUDGEMENT'
>>> recovery_for(record("promoted"), has_target=lambda: False).name
'NOTHING'
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum, auto
from pathlib import Path

import orjson
from driftwarden.daemon.state.store import ActionRecord
from driftwarden.deploy.lifecycle import OUTCOME_FILE, Outcome
from driftwarden.deploy.states import ActionState


class Recovery(Enum):
    RUN = auto()
    RESUME_TRAINING = auto()
    FAIL_JUDGEMENT = auto()
    NOTHING = auto()
    FINISH_DEPLOY = auto()
    REPEAT_ROLLBACK = auto()
    WATCH_SHADOW = auto()
    START_VERIFY = auto()
    WATCH_VERIFY = auto()
    UNKNOWN = auto()


INTERRUPTED_TRAINING = frozenset({ActionState.TRAINING, ActionState.EVALUATING})
INTERRUPTED_DEPLOY = frozenset({ActionState.PROMOTED, ActionState.DEPLOYING})


def recovery_for(action: ActionRecord, has_target: Callable[[], bool]) -> Recovery:
    """What to do with unfinished ``action`` after a restart (the module's table).
    ``has_target`` says whether its policy deploys; it is asked only for ``promoted``."""
    state = action.state
    if state == ActionState.PENDING:
        return Recovery.RUN
    if state in INTERRUPTED_TRAINING and action.info.get("on") != "live":
        return Recovery.RESUME_TRAINING
    if state == ActionState.EVALUATING:
        return Recovery.FAIL_JUDGEMENT
    if state == ActionState.PROMOTED and not has_target():
        return Recovery.NOTHING
    if state in INTERRUPTED_DEPLOY:
        return Recovery.FINISH_DEPLOY
    if state == ActionState.ROLLING_BACK:
        return Recovery.REPEAT_ROLLBACK
    if state == ActionState.SHADOWING:
        return Recovery.WATCH_SHADOW
    if action.verification_due:
        return Recovery.START_VERIFY
    if state == ActionState.VERIFYING:
        return Recovery.WATCH_VERIFY
    return Recovery.UNKNOWN


def stored_outcome(workdir: Path) -> Outcome | None:
    """The outcome a retrain stored in ``workdir`` when it ended (its record may be lost)."""
    stored = workdir / OUTCOME_FILE
    return Outcome.from_json(orjson.loads(stored.read_bytes())) if stored.is_file() else None
