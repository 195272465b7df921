"""Scale-out over Kafka: which daemon owns which models, and how their state moves.

Several daemons run in one consumer group. Producers key every event by model, and every
input topic (predictions, features, labels) has the same number of partitions, so a model's
events all arrive on the same partition *number* ``n`` of every topic. That number is the unit
of ownership, a **task** (as in Kafka Streams): the group's range assignor (kafka-python's
default) gives partition ``n`` of every topic to the same member, and the member owning task
``n`` owns the monitors, rules, join and counters of every model homed there.

State moves through a **changelog**: a compacted topic with one message per task, key
``task:<n>``, value (JSON) ``{"task", "positions", "next_index", "models": {model: pipeline
snapshot}, "owner", "wall", "labeled": ranges, "actions": [unfinished action records]}``. The
checkpoint order becomes:

1. flush the sinks (decisions, dead letters, labeled-data segments; the labeled-data log);
2. the local store transaction (positions, state, intents) — the local copy;
3. one changelog message per owned task, flushed (acknowledged by the broker);
4. commit the offsets.

On **revoke** (a graceful rebalance or stop) the daemon checkpoints — so the changelog holds
exactly the committed state — and forgets the tasks. On **assign** it reads the changelog and
restores each new task from the snapshot that has read furthest (per-partition positions;
among snapshots at the same positions the newest, whose action records are the latest: the
revoke's checkpoint comes after the last batch's, whose new intents may have ended since),
comparing it with its own local copy: the local copy wins only when it is ahead (this daemon
crashed between steps 2 and 3 and got its task back) or level (it keeps its labeled buffer).
It then seeks every partition of the task to the snapshot's positions: records before them are
already in the state and are skipped; records after them are processed once. Lost partitions
(this member was expelled) are dropped without writing anything, since a new owner may have
moved on.

**The labeled-data buffer** moves through Kafka too, when ``source.labeled_topic`` is set
(daemon/io/kafka/labeled_log.py): at step 1 each owned model's labeled rows since the last
checkpoint (its buffer's documents, as its segment files hold them) go to that topic, key = the
model, partition = its task, header = this daemon; the offsets they landed at extend the task's
**ranges** (``[first, end, owner]``), which the snapshot carries (``"labeled"``, and in each
model's state for the local copy). A new owner restoring from the changelog reads the task's
partition back within those ranges and writes each model's documents as segments of its buffer,
one whenever the documents read hold 64 MB (``READ_BUDGET_BYTES``), so an assign's memory is bounded:
the training window is the one the old owner had, row for row. Messages outside the
ranges (sent by a daemon that died before its checkpoint) are skipped: their rows are replayed
and written again. Row indices stay ordered: a new owner's next event index is at least the
snapshot's. The topic keeps rows by time (``labeled_retention``, default 7 days) and optionally
by size; it must outlast the time a model takes to label the rows its retrain trains on.

**Actions in flight are handed over, not finished by the old owner** (daemon/actions/handover.py).
On revoke the daemon first *releases* the revoked tasks' unfinished actions (queued phases
dropped, a running trainer killed, a running short phase — a gate, a deploy — waited for up to
10 s), then checkpoints, so the snapshot carries their records (``"actions"``), and marks them
``handed_over`` in its own store. The new owner writes the records into its store and carries each
on from its record as a restart would (daemon/actions/recovery.py): a ``training`` one trains
again, on the rebuilt window up to the decision's event — the rows the old owner exported. Why
hand over rather than finish where it started: the old owner is usually leaving (a scale-in, a
deploy, a crash), a shadow judgement or a deploy's verification needs the live labeled rows that
now reach the new owner only, and the trainer cannot outlive a daemon that stops for good; a
training cut short is the price (a rebalance during a long training restarts it). Exactly once:
on a graceful move the released action records nothing more on the old owner and runs on the
new one from the snapshot written after the release, so one training completes and one
candidate is registered. After an expulsion (``lost``: nothing is written) the new owner resumes
from the last checkpoint's records, so a phase that ended after it may run again (at least once;
the registry's compare-and-swap keeps the champion right). With a changelog a restarted daemon
carries on its own unfinished actions only when their task comes back to it.

Without a changelog the state stays in the local store and the partitions resume from its
positions: run one daemon per group.

Known limits: zombie fencing is by "furthest positions wins", not by transactions; the
labeled-data log is read from the oldest retained offset of the task's ranges on every assign
(bounded by its retention, not by the rows the buffers keep: an assign reads, and writes as
segments, rows that the buffers then prune).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any, Protocol

import orjson
from driftwarden.daemon.checkpoint import Checkpoint
from driftwarden.daemon.config import SourceConfig
from driftwarden.daemon.io.events import EventRows
from driftwarden.daemon.io.kafka.admin import ensure_topics, read_messages
from driftwarden.daemon.io.kafka.labeled_log import LabeledLog, Range
from driftwarden.daemon.io.kafka.names import parse_partition_name, partition_name
from driftwarden.daemon.io.kafka.settings import shared_settings
from driftwarden.daemon.io.kafka.sink import KafkaSink
from driftwarden.daemon.io.kafka.source import CommitFailed
from driftwarden.daemon.io.sources import RebalancingSource, Record
from driftwarden.daemon.state.store import Store
from driftwarden.policies.durations import parse_duration

log = logging.getLogger("driftwarden.partitions")

MAX_SNAPSHOT_BYTES = 64 * 1024 * 1024
"""Largest changelog message (all models of one task, gzip-compressed): monitor windows of a
few thousand events and tens of features per model fit with room to spare."""

CHANGELOG_READ_TIMEOUT_S = 60.0
"""Reading the whole compacted changelog on assign; it holds one live message per task."""

TASK_PREFIX = "task:"


def task_of(partition: str) -> int | None:
    """The task (partition number) of a Kafka partition name; None for other sources.

    >>> task_of("kafka:predictions:2"), task_of("file:a.jsonl")
    (2, None)
    """
    parsed = parse_partition_name(partition)
    return None if parsed is None else parsed[1]


def furthest(snapshots: Sequence[Mapping[str, Any] | None]) -> Mapping[str, Any] | None:
    """The snapshot that has read furthest: positions >= the others' on every partition it
    shares with them, the sum of positions breaking ties between incomparable ones; among equal
    ones the first wins.

    >>> a = {"positions": {"p:0": 5, "q:0": 3}}; b = {"positions": {"p:0": 7, "q:0": 3}}
    >>> furthest([a, b]) is b, furthest([b, a]) is b, furthest([None, a]) is a, furthest([a, dict(a)]) is a
    (True, True, True, True)
    """
    best: Mapping[str, Any] | None = None
    for snap in snapshots:
        if snap is None:
            continue
        if best is None or _key(snap) > _key(best):
            best = snap
    return best


def _key(snap: Mapping[str, Any]) -> tuple[int, int]:
    positions = snap.get("positions") or {}
    return sum(int(v) for v in positions.values()), len(positions)


class Changelog:
    """The compacted changelog topic of task snapshots (one partition: read whole on assign)."""

    def __init__(self, bootstrap: str, topic: str, client: Mapping[str, Any], waiter: Any = None) -> None:
        """``waiter``: a :class:`~driftwarden.daemon.io.kafka.outage.Waiter`, so that a flush waits a broker outage
        out (a snapshot sent twice is harmless: the furthest positions win)."""
        self.bootstrap, self.topic = bootstrap, topic
        self._client = dict(client)
        ensure_topics(
            bootstrap,
            {topic: 1},
            configs={topic: {"cleanup.policy": "compact", "max.message.bytes": str(MAX_SNAPSHOT_BYTES)}},
            **shared_settings(self._client),
        )
        producer = shared_settings(self._client)
        self._sink = KafkaSink(
            bootstrap, topic, waiter=waiter, compression_type="gzip", max_request_size=MAX_SNAPSHOT_BYTES, **producer
        )

    def write(self, task: int, value: Mapping[str, Any]) -> None:
        self._sink.send(orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY), key=f"{TASK_PREFIX}{task}".encode())

    def flush(self) -> None:
        self._sink.flush()

    def read(self) -> dict[int, list[dict[str, Any]]]:
        """Every snapshot still in the topic, per task, oldest first (compaction keeps the last
        per task; the ones not compacted yet let :func:`furthest` pass over a stale write)."""
        reader = shared_settings(self._client)
        messages = read_messages(
            self.bootstrap,
            self.topic,
            timeout=CHANGELOG_READ_TIMEOUT_S,
            max_partition_fetch_bytes=MAX_SNAPSHOT_BYTES,
            fetch_max_bytes=MAX_SNAPSHOT_BYTES,
            **reader,
        )
        out: dict[int, list[dict[str, Any]]] = {}
        for m in messages:
            if m.key is None or not m.key.startswith(TASK_PREFIX.encode()):
                continue
            task = int(m.key[len(TASK_PREFIX) :])
            if m.value is None:  # a tombstone: the task's state was deleted
                out.pop(task, None)
                continue
            out.setdefault(task, []).append(orjson.loads(m.value))
        return out

    def close(self) -> None:
        self._sink.close()


Restore = Callable[[str, dict[str, Any], int, bool], bool]
"""``restore(model, state, next_index, local)``: rebuild ``model``'s pipeline from ``state`` (with the local
store's unmatched join halves and labeled buffer when ``local``, else a fresh buffer), as of event index
``next_index``; False when this daemon has no policy for ``model``."""

Adopt = Callable[[str, list[bytes]], int]
"""``adopt(model, docs)``: write labeled-data log documents (oldest first) into the restored ``model``'s
labeled buffer, as a segment; returns the rows they hold."""


class Handover(Protocol):
    """The action runner's side of a move (daemon/actions/handover.py)."""

    def release(self, models: Collection[str]) -> list[str]: ...

    def records(self, models: Collection[str]) -> list[dict[str, Any]]: ...

    def handed_over(self, keys: Collection[str], task: int) -> None: ...

    def adopt(self, records: Sequence[dict[str, Any]], task: int, models: Collection[str]) -> None: ...


class Ownership:
    """The tasks a daemon owns and the moves of their state; installed as the Kafka source's
    rebalance listener and as the checkpoint's committer. Its callbacks run while the daemon's
    thread is inside ``poll`` or ``close``, so they use the daemon's state without locks.

    It is handed the daemon's :class:`~driftwarden.daemon.checkpoint.Checkpoint` (positions and
    next event index move with the tasks), the store (this daemon's own last checkpoint),
    ``models`` (those with a policy here), ``restore`` (see :data:`Restore`) and
    ``checkpoint_now`` (write a whole checkpoint: on revoke).
    """

    def __init__(
        self,
        source: RebalancingSource,
        checkpoint: Checkpoint,
        store: Store,
        *,
        topics: Sequence[str],
        models: Iterable[str],
        restore: Restore,
        checkpoint_now: Callable[[], object],
        changelog: Changelog | None = None,
        labeled: Callable[[str], LabeledLog] | None = None,
        handover: Handover | None = None,
        adopt: Adopt | None = None,
    ) -> None:
        self.source, self.checkpoint, self.store, self.changelog = source, checkpoint, store, changelog
        self._adopt = adopt
        self.handover = handover if changelog is not None else None
        """Hands actions in flight over with their task (None: without a changelog they stay)."""
        self.topics: tuple[str, ...] = tuple(topics)
        self.models: tuple[str, ...] = tuple(models)
        self._restore_model, self._checkpoint_now = restore, checkpoint_now
        self.tasks: set[int] = set()
        self.home: dict[str, int] = {}
        """model → the task its events arrive on."""
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.labeled = labeled(self.owner) if labeled is not None and changelog is not None else None
        """The labeled-data log (daemon/io/kafka/labeled_log.py), when the config names its topic."""
        self.labeled_ranges: dict[int, list[Range]] = {}
        """task → the ranges of the labeled-data log that count (they move with the task)."""
        self.moves = {"assigned": 0, "revoked": 0, "lost": 0, "restored_remote": 0, "restored_local": 0}
        self._warned: set[str] = set()
        for model in self.models:
            state = store.pipeline_state(model)
            if state is not None and state.get("task") is not None:
                self.home[model] = int(state["task"])
        source.on_assign, source.on_revoke, source.on_lost = self.assigned, self.revoked, self.lost
        checkpoint.commit = self.commit

    @classmethod
    def attach(
        cls,
        config: SourceConfig,
        source: RebalancingSource,
        checkpoint: Checkpoint,
        store: Store,
        *,
        models: Iterable[str],
        restore: Restore,
        checkpoint_now: Callable[[], object],
        handover: Handover | None = None,
        waiter: Callable[[str], Any] | None = None,
        adopt: Adopt | None = None,
    ) -> Ownership:
        """Ownership of ``source``'s tasks, with a changelog when ``config`` names one; ``waiter(bootstrap)``
        makes what the changelog's and the labeled-data log's flushes wait broker outages out with."""
        changelog = None
        labeled = None
        if config.changelog_topic:
            assert config.bootstrap is not None
            wait = waiter(config.bootstrap) if waiter is not None else None
            changelog = Changelog(config.bootstrap, config.changelog_topic, config.settings, wait)
            checkpoint.forget()  # positions come with each task on assign
            bootstrap, topic = config.bootstrap, config.labeled_topic
            if topic:

                def labeled(owner: str) -> LabeledLog:
                    return LabeledLog(
                        bootstrap,
                        topic,
                        config.settings,
                        owner=owner,
                        like=config.topics[0],
                        retention_ms=int(parse_duration(config.labeled_retention) * 1000),
                        retention_bytes=config.labeled_retention_bytes,
                        waiter=wait,
                    )

        return cls(
            source,
            checkpoint,
            store,
            topics=config.topics,
            models=models,
            restore=restore,
            checkpoint_now=checkpoint_now,
            changelog=changelog,
            labeled=labeled,
            handover=handover,
            adopt=adopt,
        )

    # -- the loop's hooks -------------------------------------------------------------------------

    def routed(self, records: Sequence[Record], first: int, by_model: Mapping[str, EventRows]) -> None:
        """Note each model's task from its first event of the batch (a per-model, not per-event, cost);
        ``first`` is the event index of ``records[0]``."""
        for model, rows in by_model.items():
            task = task_of(records[rows.index[0] - first].partition)
            if task is None:
                continue
            home = self.home.setdefault(model, task)
            if home != task and model not in self._warned and self.changelog is not None:
                self._warned.add(model)
                log.error(
                    "model %s arrives on partitions %d and %d: key events by model and give every input "
                    "topic the same partition count, or its state cannot move with a partition",
                    model,
                    home,
                    task,
                )

    def owns(self, model: str) -> bool:
        """Whether the checkpoint should save ``model``: its task is owned here (or, without a
        changelog, it has ever been seen)."""
        home = self.home.get(model)
        return home is not None and (self.changelog is None or home in self.tasks)

    def ship_labeled(self, docs: Mapping[str, list[bytes]]) -> None:
        """Step 1 of the checkpoint, with a labeled-data log: the owned models' labeled rows since
        the last checkpoint (``docs``: model → its buffer's pending documents) to their task's
        partition, acknowledged, and counted in the task's ranges before the states are taken."""
        if self.labeled is None:
            return
        for model, model_docs in docs.items():
            task = self.home.get(model)
            if model_docs and task is not None and task in self.tasks:
                self.labeled.send(task, model, model_docs)
        self.labeled.flush(self.labeled_ranges)

    def ranges_of(self, model: str) -> list[Range] | None:
        """The labeled-data log's ranges of ``model``'s task, for its checkpointed state (None
        without a log)."""
        if self.labeled is None:
            return None
        task = self.home.get(model)
        return [list(r) for r in self.labeled_ranges.get(task, [])] if task is not None else None

    def checkpointed(self, snapshots: Mapping[str, Mapping[str, Any]]) -> None:
        """Step 3 of the checkpoint: one changelog message per owned task, flushed."""
        if self.changelog is None:
            return
        positions = self.checkpoint.positions
        actions = self.handover.records(self._models_of(self.tasks)) if self.handover is not None else []
        for task in sorted(self.tasks):
            names = self._names(task)
            value = {
                "task": task,
                "positions": {n: positions[n] for n in names if n in positions},
                "next_index": self.checkpoint.next_index,
                "models": {m: s for m, s in snapshots.items() if self.home.get(m) == task},
                "owner": self.owner,
                "wall": time.time(),
            }
            if self.labeled is not None:
                value["labeled"] = self.labeled_ranges.get(task, [])
            if self.handover is not None:
                value["actions"] = [a for a in actions if self.home.get(a["model"]) == task]
            self.changelog.write(task, value)
        self.changelog.flush()

    def commit(self, positions: Mapping[str, int]) -> None:
        """Step 4. A commit the group refuses (it is rebalancing) is not an error: the state and
        positions are in the changelog and the local store, so the next owner skips what is done."""
        try:
            self.source.commit(positions)
        except CommitFailed as e:
            log.warning("%s; the next owner resumes from the checkpointed positions", e)

    # -- rebalance callbacks ------------------------------------------------------------------------

    def revoked(self, names: list[str]) -> None:
        """Release the revoked tasks' actions in flight, checkpoint (and so commit) everything
        (the changelog then carries those actions' records), mark them handed over, then forget
        the tasks."""
        self.moves["revoked"] += 1
        released = self._release(names)
        self._checkpoint_now()
        self._handed_over(released)
        self._drop(names)

    def lost(self, names: list[str]) -> None:
        """Expelled from the group: stop the tasks' actions, forget the tasks, write nothing (a new
        owner may be ahead; it carries the actions on from the last checkpoint's records)."""
        self.moves["lost"] += 1
        log.warning(
            "partitions %s lost to a rebalance; their uncheckpointed work is dropped and replayed by their new owner",
            names,
        )
        self._handed_over(self._release(names))
        self._drop(names)

    def assigned(self, names: list[str]) -> None:
        self.moves["assigned"] += 1
        new = sorted({t for t in map(task_of, names) if t is not None} - self.tasks)
        if not new:
            return
        self.tasks.update(new)
        if self.changelog is None:
            return  # the local store's positions were given to seek() at start
        for task in new:
            self.labeled_ranges[task] = []
        remote = self.changelog.read()
        for task in new:
            self._restore(task, remote.get(task, []))
        log.info("assigned tasks %s (partitions %s); now owning %s", new, names, sorted(self.tasks))

    # -- helpers ---------------------------------------------------------------------------------

    def _models_of(self, tasks: Collection[int]) -> list[str]:
        return [m for m, t in self.home.items() if t in tasks]

    def _release(self, names: list[str]) -> dict[int, list[str]]:
        """Task → the keys of its actions released (none without a handover)."""
        if self.handover is None:
            return {}
        gone = {t for t in map(task_of, names) if t is not None} & self.tasks
        released = {}
        for task in sorted(gone):
            keys = self.handover.release(self._models_of({task}))
            if keys:
                released[task] = keys
        return released

    def _handed_over(self, released: Mapping[int, list[str]]) -> None:
        if not released:
            return
        assert self.handover is not None  # only a handover releases actions
        for task, keys in released.items():
            self.handover.handed_over(keys, task)
            log.info("task %d: actions %s handed over to its next owner", task, keys)

    def _names(self, task: int) -> list[str]:
        return [partition_name(t, task) for t in self.topics]

    def _drop(self, names: list[str]) -> None:
        gone = {t for t in map(task_of, names) if t is not None}
        if self.changelog is None:
            return  # the local store is the state: keep it, in case the partitions come back
        self.checkpoint.forget(names)
        self.tasks -= gone
        for task in gone:
            self.labeled_ranges.pop(task, None)
        log.info("revoked tasks %s; now owning %s", sorted(gone), sorted(self.tasks))

    def _local(self, task: int) -> dict[str, Any] | None:
        """This daemon's own last checkpoint of ``task``, in the changelog's form."""
        stored = self.store.positions()
        positions = {n: stored[n] for n in self._names(task) if n in stored}
        if not positions:
            return None
        models = {}
        for model in self.models:
            state = self.store.pipeline_state(model)
            if state is not None and state.get("task") == task:
                models[model] = state
        local: dict[str, Any] = {
            "task": task,
            "positions": positions,
            "next_index": self.store.next_index(),
            "models": models,
            "local": True,
        }
        if self.handover is not None:
            local["actions"] = self.handover.records(list(models))
        return local

    def _restore(self, task: int, remote: list[dict[str, Any]]) -> None:
        """Restore ``task`` from the furthest of its own copy and ``remote`` (the changelog's
        snapshots of it, oldest first)."""
        local = self._local(task)
        # Newest first: snapshots at the same positions differ only in their action records, and the
        # newest has them as they ended. The revoke's checkpoint follows the last batch's, whose intents
        # (``pending`` in its snapshot) the runner may have carried out since: taking the older one would
        # run them again here.
        remote = remote[::-1]
        chosen = furthest([local, *remote])  # the local copy first: it wins ties (it has the buffer too)
        names = self._names(task)
        self.checkpoint.forget(names)
        if chosen is None:
            log.info("task %d has no stored state: starting fresh at the group's committed offsets", task)
            return
        is_local = bool(chosen.get("local"))
        self.moves["restored_local" if is_local else "restored_remote"] += 1
        next_index = int(chosen["next_index"])
        self._take_ranges(task, chosen)
        restored = []
        for model, state in chosen["models"].items():
            if not self._restore_model(model, state, next_index, is_local):
                log.warning("task %d holds state of model %s, which has no policy here; ignored", task, model)
                continue
            self.home[model] = task
            restored.append(model)
        if not is_local:  # the local buffers are the ones to keep when the local copy is chosen
            self._read_labeled(task, restored)
        if self.handover is not None:  # the actions of the furthest record; the changelog's when level
            best = furthest(remote)
            source = best if best is not None and (not is_local or _key(best) >= _key(chosen)) else chosen
            self.handover.adopt(source.get("actions") or [], task, list(chosen["models"]))
        positions = {n: int(p) for n, p in chosen["positions"].items() if n in names}
        self.checkpoint.resume(positions, next_index)
        self.source.seek(positions)
        log.info(
            "task %d restored from %s (owner %s): positions %s, models %s",
            task,
            "the local store" if is_local else "the changelog",
            chosen.get("owner", "this daemon"),
            positions,
            sorted(chosen["models"]),
        )

    def _take_ranges(self, task: int, chosen: Mapping[str, Any]) -> None:
        """The task's ranges of the labeled-data log, taken from ``chosen`` (nothing without a log)."""
        if self.labeled is None:
            return
        ranges = chosen.get("labeled")
        if ranges is None:  # the local copy: each model's state carries its task's ranges
            ranges = next((s["labeled"] for s in chosen["models"].values() if s.get("labeled") is not None), [])
        self.labeled_ranges[task] = [list(r) for r in ranges]

    def _read_labeled(self, task: int, models: list[str]) -> None:
        """Rebuild ``models``' labeled buffers from the task's ranges of the labeled-data log, a segment per
        :data:`~driftwarden.daemon.io.kafka.labeled_log.READ_BUDGET_BYTES` read (nothing without a log)."""
        if self.labeled is None or self._adopt is None or not models:
            return
        rows: dict[str, int] = {}

        def adopt(model: str, docs: list[bytes]) -> None:
            assert self._adopt is not None
            rows[model] = rows.get(model, 0) + self._adopt(model, docs)

        read = self.labeled.read_into(task, self.labeled_ranges[task], models, adopt)
        log.info(
            "task %d: %d labeled-data documents (%d rows) of %d models read back from %s",
            task,
            sum(read.values()),
            sum(rows.values()),
            len(read),
            self.labeled.topic,
        )
