"""The checkpoint: how far the daemon has read, when that is written down, and in which order.

A :class:`Checkpoint` owns

- the source **positions**: per partition name (``file:events.jsonl``, ``kafka:predictions:3``),
  the next offset to read. Records below their partition's position are already applied and
  are skipped (:meth:`Checkpoint.apply`), so a replayed record is never counted twice;
- the **next event index**: the 0-based index the next decoded record gets (the ``at`` of
  signals and decisions);
- the **watermark**: the latest event time admitted (daemon/io/watermark.py), one per daemon, so
  a restart does not learn it afresh from its first batch;
- **when a checkpoint is due**: once ``every_records`` records were applied since the last one,
  or ``every_seconds`` have passed (an idle stream with unwritten progress too);
- the **commit order** of :meth:`Checkpoint.write`:

  1. flush the sinks (dead letters, decisions, labeled-data segments): a batch's outputs are
     durable before the positions that produced them; the file sinks' lengths go into 2, and a
     restart cuts each file back to its recorded length (a batch that was appended but never
     checkpointed is written once, by its replay: no dead letter twice); the labeled buffers'
     segment lists go into 2 as well (a segment deleted from outside is then named);
  2. one store transaction: positions, next event index, the pipelines' states, the new action
     intents, the audit entries, the changes of the join's unmatched halves, of the events that
     wait for more of their model (read past, not yet applied: see daemon/runtime.py) and the
     outbox's new notifications (daemon/alerting/outbox.py);
  3. what must follow the local copy and precede the commit (``after_store``: with Kafka, one
     changelog message per owned task, see daemon/partitions.py);
  4. commit the positions to the source (Kafka: the group's offsets).

A crash before 2 replays the uncommitted records (their outputs may go out twice, with the same
idempotency keys); a crash after 2 resumes from the stored positions, so nothing applied is
applied again. Our state lives in the local store, not in a changelog topic: that is why the
store transaction comes before the commit, and why the source's committed offsets may lag it.

>>> import tempfile, pathlib
>>> from driftwarden.daemon.io.sources import Record
>>> from driftwarden.daemon.state.store import Store
>>> store = Store(pathlib.Path(tempfile.mkdtemp()) / "state.db")
>>> committed = []
>>> cp = Checkpoint(store, committed.append, every_records=2, every_seconds=60.0)
>>> records = [Record(b"{}", "file:a", 0), Record(b"{}", "file:a", 1)]
>>> fresh, first = cp.apply(records); (len(fresh), first, cp.next_index, cp.positions, cp.due())
(2, 0, 2, {'file:a': 2}, True)
>>> cp.write({}), committed, store.positions(), cp.due()
([], [{'file:a': 2}], {'file:a': 2}, False)
>>> cp.apply(records)  # already applied
([], 2)
>>> store.close()
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from driftwarden.daemon.io.sinks import file_marks
from driftwarden.daemon.io.sources import Record
from driftwarden.daemon.state.labeled_buffer import segment_lists
from driftwarden.daemon.state.store import Intent, OutboxRow, Store, WaitingDelta

if TYPE_CHECKING:
    from driftwarden.daemon.state.label_join import PendingDelta

AuditEntry = tuple[str | None, str, str | None, Mapping[str, Any]]
"""(model, type, key, payload): one line of the audit log."""

Commit = Callable[[Mapping[str, int]], None]
"""Commits positions to the source (or to Kafka ownership, which tolerates a rebalancing group)."""


class Flushable(Protocol):
    def flush(self) -> None: ...


class Checkpoint:
    """Positions, next event index, due-ness and commit order; see the module docstring.

    ``commit`` receives a copy of the positions after each store transaction; it may be
    replaced (Kafka ownership installs its own, see daemon/partitions.py). ``clock`` is
    monotonic seconds.
    """

    def __init__(
        self,
        store: Store,
        commit: Commit,
        *,
        every_records: int,
        every_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store, self.commit = store, commit
        self.every_records, self.every_seconds, self.clock = every_records, every_seconds, clock
        self.positions: dict[str, int] = store.positions()
        """Partition name → next offset to read, of every record applied (written or not)."""
        self.next_index: int = store.next_index()
        self.watermark: float | None = store.watermark()
        """The latest event time admitted; the loop sets it before each :meth:`write`."""
        self.unwritten = 0
        """Records applied since the last :meth:`write`."""
        self.written = 0
        """Checkpoints written by this object."""
        self._last = clock()

    # -- the loop's steps ------------------------------------------------------------------------

    def apply(self, records: Sequence[Record]) -> tuple[Sequence[Record], int]:
        """The records of a polled batch not applied yet (at or above their partition's position),
        now counted as applied: the positions move past them and they get the event indices from
        the returned one on."""
        positions = self.positions
        first = self.next_index
        partitions = {r.partition for r in records}
        single = partitions.pop() if len(partitions) == 1 else None  # a file, or one Kafka partition
        if single is not None and records[0].offset >= positions.get(single, 0):
            fresh = records  # offsets ascend within a partition: all new
        else:
            fresh = [r for r in records if r.offset >= positions.get(r.partition, 0)]
        if not fresh:
            return fresh, first
        self.next_index = first + len(fresh)
        if single is not None:
            positions[single] = max(positions.get(single, 0), fresh[-1].offset + 1)
        else:
            for r in fresh:
                if r.offset + 1 > positions.get(r.partition, 0):
                    positions[r.partition] = r.offset + 1
        self.unwritten += len(fresh)
        return fresh, first

    def due(self) -> bool:
        """Whether enough records or time have passed since the last checkpoint."""
        return self.unwritten >= self.every_records or self.clock() - self._last >= self.every_seconds

    def write(
        self,
        states: Mapping[str, Any] | Iterable[tuple[str, Any]],
        intents: Sequence[Intent] = (),
        audit: Sequence[AuditEntry] = (),
        pending: Mapping[str, PendingDelta] | None = None,
        *,
        sinks: Iterable[Flushable] = (),
        after_store: Callable[[], None] | None = None,
        outbox: Sequence[OutboxRow] = (),
        waiting: WaitingDelta | None = None,
    ) -> list[str]:
        """Steps 1-4 of the module docstring; returns the keys of the intents that are new.
        ``states`` maps (or yields pairs of) model → pipeline state; see :meth:`Store.checkpoint`."""
        sinks = list(sinks)
        for sink in sinks:
            sink.flush()
        marks = file_marks(sinks)  # their lengths now: a restart cuts off what a failed transaction leaves
        segments = segment_lists(sinks)  # the labeled buffers' files now: a deleted one is found later
        new = self.store.checkpoint(
            self.positions,
            self.next_index,
            states,
            intents,
            audit,
            pending,
            outbox=outbox,
            marks=marks,
            watermark=self.watermark,
            segments=segments,
            waiting=waiting,
        )
        if after_store is not None:
            after_store()
        self.commit(dict(self.positions))
        self.unwritten = 0
        self.written += 1
        self._last = self.clock()
        return new

    # -- moves of partitions (Kafka ownership) ----------------------------------------------------

    def forget(self, names: Iterable[str] | None = None) -> None:
        """Drop the positions of ``names`` (all, by default): their partitions went to another
        daemon, or will come with their state on assign."""
        if names is None:
            self.positions.clear()
            return
        for name in names:
            self.positions.pop(name, None)

    def resume(self, positions: Mapping[str, int], next_index: int) -> None:
        """Take over restored partitions: their positions, and an event index at least ``next_index``."""
        self.positions.update(positions)
        self.next_index = max(self.next_index, next_index)
