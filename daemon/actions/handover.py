"""The actions' side of a Kafka partition move (daemon/partitions.py): an action in flight is
**handed over**, exactly once, to the partition's next owner.

The daemon losing a partition releases its models' unfinished actions
(:meth:`~driftwarden.daemon.actions.runner.ActionRunner.release`: queued phases dropped, a
running trainer killed, a short phase waited for), checkpoints (the task's snapshot then carries
their records) and marks them ``handed_over`` in its own store. The new owner writes the records
that came with the task into its store and carries each on from its record, as a restart would
(:mod:`driftwarden.daemon.actions.recovery`): a ``pending`` one runs, a ``training`` one trains
(on the training window rebuilt from the labeled-data log, up to the decision's event), a
``shadowing`` or ``verifying`` one waits for its live rows on the new owner's traffic.

>>> import tempfile, pathlib
>>> from driftwarden.daemon.state.store import Intent, Store
>>> store = Store(pathlib.Path(tempfile.mkdtemp()) / "state.db")
>>> _ = store.checkpoint({}, 0, {}, [Intent("m/r/1", "m", "r", "retrain", "retrain", 1, 0.0, {})])
>>> class Runner:
...     def release(self, models): return [a.key for a in store.unfinished_actions() if a.model in models]
...     def adopt(self, keys): print("adopted", sorted(keys))
>>> handover = Handover(Runner(), store)
>>> records = handover.records({"m"}); [r["state"] for r in records]
['pending']
>>> handover.handed_over(handover.release({"m"}), task=0); store.action("m/r/1").state
<ActionState.HANDED_OVER: 'handed_over'>
>>> handover.adopt(records, task=0, models={"m"}); store.action("m/r/1").state
adopted ['m/r/1']
<ActionState.PENDING: 'pending'>
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any, Protocol

from driftwarden.daemon.state.store import Store
from driftwarden.deploy.states import ActionState


class Releasing(Protocol):
    """What :class:`Handover` needs of the action runner."""

    def release(self, models: Collection[str]) -> list[str]: ...

    def adopt(self, keys: Collection[str]) -> None: ...


class Handover:
    """The ``handover`` that :class:`~driftwarden.daemon.partitions.Ownership` calls."""

    def __init__(self, runner: Releasing, store: Store) -> None:
        self.runner, self.store = runner, store

    def release(self, models: Collection[str]) -> list[str]:
        """Stop working on ``models``' unfinished actions; their keys."""
        return self.runner.release(models) if models else []

    def records(self, models: Collection[str]) -> list[dict[str, Any]]:
        """The unfinished actions of ``models`` as plain records, for a task's snapshot."""
        if not models:
            return []
        return [a.as_dict() for a in self.store.unfinished_actions() if a.model in models]

    def handed_over(self, keys: Collection[str], task: int) -> None:
        """Mark ``keys`` as carried on elsewhere (final in this store)."""
        for key in keys:
            self.store.update_action(key, ActionState.HANDED_OVER, {"handed_over": {"task": task}})

    def adopt(self, records: Sequence[dict[str, Any]], task: int, models: Collection[str] = ()) -> None:
        """Take over ``records`` (from a task's snapshot) and carry them on. This store's other
        unfinished actions of the task's ``models`` were carried on elsewhere meanwhile (this
        daemon crashed or was expelled with them): they are marked handed over."""
        keys = {r["key"] for r in records}
        stale = [a.key for a in self.store.unfinished_actions() if a.model in models and a.key not in keys]
        self.handed_over(stale, task)
        if not records:
            return
        self.store.put_actions(records, {"adopted": {"task": task}})
        self.runner.adopt(keys)
