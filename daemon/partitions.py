"""Scale-out over Kafka: which daemon owns which models, and how their state moves.

Several daemons run in one consumer group. Producers key every event by model, and every
input topic (predictions, features, labels) has the same number of partitions, so a model's
events all arrive on the same partition *number* ``n`` of every topic. That number is the unit
of ownership, a **task** (as in Kafka Streams): the group's range assignor (kafka-python's
default) gives partition ``n`` of every topic to the same member, and the member owning task
``n`` owns the monitors, rules, join and counters of every model homed there.

State moves through a **changelog**: a compacted topic with one message per task, key
``task:<n>``, value (JSON) ``{"task", "positions", "next_index", "models": {model: pipeline
snapshot}, "owner", "generation"}``. The checkpoint order becomes:

1. flush the sinks (decisions, dead letters, labeled-data segments);
2. the local store transaction (positions, state, intents) — the local copy;
3. one changelog message per owned task, flushed (acknowledged by the broker);
4. commit the offsets.

On **revoke** (a graceful rebalance or stop) the daemon checkpoints — so the changelog holds
exactly the committed state — and forgets the tasks. On **assign** it reads the changelog and
restores each new task from the snapshot that has read furthest (per-partition positions),
comparing it with its own local copy: the local copy wins only when it is ahead (this daemon
crashed between steps 2 and 3 and got its task back) or level (it keeps its labeled buffer).
It then seeks every partition of the task to the snapshot's positions: records before them are
already in the state and are skipped; records after them are processed once. Lost partitions
(this member was expelled) are dropped without writing anything, since a new owner may have
moved on.

Without a changelog the state stays in the local store and the partitions resume from its
positions: run one daemon per group.

What does not move (known limits): the labeled-data buffer (JSON segments on the previous
owner's disk — a new owner buffers afresh, so a retrain right after a move trains on fewer
rows), and actions already started (they finish on the daemon that decided them, from its local
store). Zombie fencing is by "furthest positions wins", not by transactions.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import orjson
from driftwarden.daemon.checkpoint import Checkpoint
from driftwarden.daemon.config import SourceConfig
from driftwarden.daemon.io.events import EventRows
from driftwarden.daemon.io.kafka.admin import ensure_topics, read_messages
from driftwarden.daemon.io.kafka.names import parse_partition_name, partition_name
from driftwarden.daemon.io.kafka.settings import shared_settings
from driftwarden.daemon.io.kafka.sink import KafkaSink
from driftwarden.daemon.io.kafka.source import CommitFailed
from driftwarden.daemon.io.sources import RebalancingSource, Record
from driftwarden.daemon.state.store import Store

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

    def __init__(self, bootstrap: str, topic: str, client: Mapping[str, Any]) -> None:
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
            bootstrap, topic, compression_type="gzip", max_request_size=MAX_SNAPSHOT_BYTES, **producer
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
"""``restore(model, state, next_index, local)``: rebuild ``model``'s pipeline from ``state`` (with the
local store's unmatched join halves and labeled buffer when ``local``, else a fresh buffer), as of
event index ``next_index``; False when this daemon has no policy for ``model``."""


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
    ) -> None:
        self.source, self.checkpoint, self.store, self.changelog = source, checkpoint, store, changelog
        self.topics: tuple[str, ...] = tuple(topics)
        self.models: tuple[str, ...] = tuple(models)
        self._restore_model, self._checkpoint_now = restore, checkpoint_now
        self.tasks: set[int] = set()
        self.home: dict[str, int] = {}
        """model → the task its events arrive on."""
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
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
    ) -> Ownership:
        """Ownership of ``source``'s tasks, with a changelog when ``config`` names one."""
        changelog = None
        if config.changelog_topic:
            assert config.bootstrap is not None
            changelog = Changelog(config.bootstrap, config.changelog_topic, config.settings)
            checkpoint.forget()  # positions come with each task on assign
        return cls(
            source,
            checkpoint,
            store,
            topics=config.topics,
            models=models,
            restore=restore,
            checkpoint_now=checkpoint_now,
            changelog=changelog,
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

    def checkpointed(self, snapshots: Mapping[str, Mapping[str, Any]]) -> None:
        """Step 3 of the checkpoint: one changelog message per owned task, flushed."""
        if self.changelog is None:
            return
        positions = self.checkpoint.positions
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
        """Checkpoint (and so commit) everything, then forget the revoked tasks."""
        self.moves["revoked"] += 1
        self._checkpoint_now()
        self._drop(names)

    def lost(self, names: list[str]) -> None:
        """Expelled from the group: forget the tasks, write nothing (a new owner may be ahead)."""
        self.moves["lost"] += 1
        log.warning(
            "partitions %s lost to a rebalance; their uncheckpointed work is dropped and replayed by their new owner",
            names,
        )
        self._drop(names)

    def assigned(self, names: list[str]) -> None:
        self.moves["assigned"] += 1
        new = sorted({t for t in map(task_of, names) if t is not None} - self.tasks)
        if not new:
            return
        self.tasks.update(new)
        if self.changelog is None:
            return  # the local store's positions were given to seek() at start
        remote = self.changelog.read()
        for task in new:
            self._restore(task, remote.get(task, []))
        log.info("assigned tasks %s (partitions %s); now owning %s", new, names, sorted(self.tasks))

    # -- helpers ---------------------------------------------------------------------------------

    def _names(self, task: int) -> list[str]:
        return [partition_name(t, task) for t in self.topics]

    def _drop(self, names: list[str]) -> None:
        gone = {t for t in map(task_of, names) if t is not None}
        if self.changelog is None:
            return  # the local store is the state: keep it, in case the partitions come back
        self.checkpoint.forget(names)
        self.tasks -= gone
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
        return {
            "task": task,
            "positions": positions,
            "next_index": self.store.next_index(),
            "models": models,
            "local": True,
        }

    def _restore(self, task: int, remote: list[dict[str, Any]]) -> None:
        local = self._local(task)
        chosen = furthest([local, *remote])  # the local copy first: it wins ties (it has the buffer too)
        names = self._names(task)
        self.checkpoint.forget(names)
        if chosen is None:
            log.info("task %d has no stored state: starting fresh at the group's committed offsets", task)
            return
        is_local = bool(chosen.get("local"))
        self.moves["restored_local" if is_local else "restored_remote"] += 1
        next_index = int(chosen["next_index"])
        for model, state in chosen["models"].items():
            if not self._restore_model(model, state, next_index, is_local):
                log.warning("task %d holds state of model %s, which has no policy here; ignored", task, model)
                continue
            self.home[model] = task
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
