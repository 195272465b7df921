"""The states of an action (a decision being carried out), in one place for deploy/ and daemon/.

An alert ends ``done``; any action the daemon does not execute ends ``skipped``. A retrain::

    pending → training → evaluating → rejected
                                   └→ promoted → deploying → deployed
                                        [→ verifying → verified | rolling_back → rolled_back]
    pending → training → shadowing → evaluating → rejected | promoted → deploying → deployed …
    (any step) → failed
    (any step, on one daemon of a Kafka group) → handed_over   (it goes on where its model's partition went)

The values are what the store persists (``state.db``) and what the JSON lines carry; a member
compares equal to its string:

>>> ActionState.DEPLOYED == "deployed", f"{ActionState.ROLLING_BACK}"
(True, 'rolling_back')
>>> sorted(s.value for s in TERMINAL_STATES)
['done', 'failed', 'handed_over', 'rejected', 'rolled_back', 'skipped', 'verified']
>>> ActionState.DEPLOYED in TERMINAL_STATES, ActionState.DEPLOYED in OUTCOME_STATES
(False, True)
"""

from __future__ import annotations

from enum import StrEnum


class ActionState(StrEnum):
    """Where an action is; the value is the persisted string."""

    PENDING = "pending"
    """Written with its decision's checkpoint; nothing has run yet."""
    TRAINING = "training"
    """A trainer runs (recorded once per attempt)."""
    SHADOWING = "shadowing"
    """The candidate is registered as challenger and waits for live labeled rows."""
    EVALUATING = "evaluating"
    """Candidate and champion are scored (on held-out rows, or on live ones after shadowing)."""
    PROMOTED = "promoted"
    """The gate passed and the candidate is registered; final when there is no deploy target."""
    REJECTED = "rejected"
    """The gate refused the candidate; the champion is untouched."""
    DEPLOYING = "deploying"
    """The candidate is being put where the serving app reads it."""
    DEPLOYED = "deployed"
    """It serves and is the champion; final unless the policy verifies the deploy."""
    VERIFYING = "verifying"
    """Waiting for live labeled rows after the deploy, then checking ``rollback_if``."""
    VERIFIED = "verified"
    """``rollback_if`` did not hold (or there was nothing to roll back to)."""
    ROLLING_BACK = "rolling_back"
    """The previous champion is being redeployed."""
    ROLLED_BACK = "rolled_back"
    """The previous champion serves again."""
    FAILED = "failed"
    """Something broke; the reason is recorded and nothing is retried."""
    SKIPPED = "skipped"
    """Not executed (a dry run, or the daemon runs without executing actions)."""
    DONE = "done"
    """An alert was sent."""
    HANDED_OVER = "handed_over"
    """This daemon gave the action up, unfinished, with its model's partition: the partition's
    next owner carries it on from the record it had then (final here; see daemon/partitions.py)."""


TERMINAL_STATES = frozenset(
    {
        ActionState.DONE,
        ActionState.SKIPPED,
        ActionState.REJECTED,
        ActionState.FAILED,
        ActionState.VERIFIED,
        ActionState.ROLLED_BACK,
        ActionState.HANDED_OVER,
    }
)
"""States an action never leaves, whatever its policy says. ``promoted`` and ``deployed`` are
not among them: each is followed by another step when the policy has a deploy target or a
verification (see ``ActionRecord.finished`` in the daemon's store)."""

OUTCOME_STATES = frozenset(
    {
        ActionState.SHADOWING,
        ActionState.PROMOTED,
        ActionState.REJECTED,
        ActionState.DEPLOYED,
        ActionState.VERIFIED,
        ActionState.ROLLED_BACK,
        ActionState.FAILED,
    }
)
"""States a phase of the lifecycle ends in (``Outcome.state``): the caller decides what
follows (a live judgement after ``shadowing``, a verification after ``deployed``)."""
