"""The Kafka source: a consumer-group member that commits only what the checkpoint holds.

:class:`KafkaSource` is a consumer-group member that yields :class:`~driftwarden.daemon.io.sources.Record`
batches like the file sources do. Offsets are never committed by the client on its own
(``enable_auto_commit`` is off): the daemon commits the positions its checkpoint holds,
after the checkpoint, through :meth:`KafkaSource.commit`.

Rebalances follow the checkpoint order of DESIGN.md. kafka-python 3 runs the rebalance
listener on its IO thread while the daemon's thread is blocked inside :meth:`KafkaSource.poll`
(or :meth:`KafkaSource.close`), so the daemon's own state is never touched by two threads
at once:

1. partitions are about to go: ``on_revoke(names)`` is called; the daemon flushes its sinks,
   writes its checkpoint and calls :meth:`KafkaSource.commit` with the checkpoint's positions.
   That commit is carried out right after ``on_revoke`` returns, while this member still owns
   the partitions. (When the group has already expelled this member, the partitions are
   *lost*: ``on_lost(names)`` is called instead when given — the daemon drops their state and
   writes nothing — else ``on_revoke``; nothing is committed either way, because the new owner
   may already have moved on.)
2. partitions arrive: positions given to :meth:`KafkaSource.seek` before the assignment are
   applied, then ``on_assign(names)`` is called; the daemon loads the partitions' state and may
   :meth:`KafkaSource.seek` to its stored positions. Partitions it does not seek start at the
   group's committed offset, or at ``auto_offset_reset`` when there is none.

Partition names are ``"kafka:<topic>:<partition>"`` (:mod:`driftwarden.daemon.io.kafka.names`);
positions are next offsets to read. Client settings are passed through as kafka-python's keyword
names, except those that would break the contract above (:mod:`driftwarden.daemon.io.kafka.settings`).

A broker that is gone or a request that times out is waited out (:mod:`driftwarden.daemon.io.kafka.outage`):
:meth:`KafkaSource.poll` returns no records and backs off, :meth:`KafkaSource.commit` raises
:class:`CommitFailed` (the checkpoint holds the positions; the next commit carries them), and
:attr:`KafkaSource.problem` says what is wrong for ``/readyz``.

Fetched record batches are read by :mod:`driftwarden.daemon.io.kafka.records` straight into ``Record`` objects
(kafka-python's own per-record objects cost more than the daemon's decoding of a message).

The Kafka modules (this one, ``records``, ``sink``, ``admin``, ``settings``, ``outage``, ``labeled_log``) are
the only ones of driftwarden that import kafka-python.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from driftwarden.daemon.io.kafka.names import parse_partition_name, partition_name
from driftwarden.daemon.io.kafka.outage import LONGEST_WAIT_S, Outage, transient
from driftwarden.daemon.io.kafka.records import install
from driftwarden.daemon.io.kafka.settings import BOOTSTRAP_TIMEOUT_S, CLOSE_TIMEOUT_S, check_settings, connect
from driftwarden.daemon.io.sources import Record
from kafka import KafkaConsumer, OffsetAndMetadata, TopicPartition
from kafka import errors as kafka_errors
from kafka.consumer.subscription_state import AsyncConsumerRebalanceListener

log = logging.getLogger(__name__)

# A commit is a single round trip to the group coordinator; 30 s covers a coordinator failover.
COMMIT_TIMEOUT_S = 30.0

LOOP_COMMIT_TIMEOUT_S = 10.0
"""How long a commit from the loop (after a checkpoint) may wait: one not made is carried by the
next (the checkpoint holds the positions), so a broker that just went away stalls the loop this
long at most, not :data:`COMMIT_TIMEOUT_S`. Revoked partitions' commits keep the longer bound."""

METADATA_TIMEOUT_S = 10.0
"""How long a new source waits for its topics' partitions before it first joins its group (a few ms when the broker
answers; past it, the first poll joins without them, as kafka-python does)."""

# Settings that KafkaSource sets itself: taking them from the config would break
# commit-after-checkpoint, the bytes-in contract or the constructor's own arguments.
_SOURCE_OWNED = frozenset(
    {
        "bootstrap_servers",
        "group_id",
        "enable_auto_commit",
        "auto_offset_reset",
        "key_deserializer",
        "value_deserializer",
        "consumer_timeout_ms",
    }
)

Callback = Callable[[list[str]], None]

_COMMIT_ERRORS = (
    kafka_errors.CommitFailedError,
    kafka_errors.RebalanceInProgressError,
    kafka_errors.IllegalGenerationError,
    kafka_errors.UnknownMemberIdError,
    kafka_errors.KafkaTimeoutError,
)


class CommitFailed(RuntimeError):
    """The group coordinator did not accept a commit: the group rebalanced (this member's
    generation is stale) or the coordinator did not answer in time. Nothing is lost: the
    partitions are read again from the previous commit by whoever owns them next."""


class _Listener(AsyncConsumerRebalanceListener):
    """Forwards kafka-python's rebalance events to the owning source (on the IO thread)."""

    def __init__(self, source: KafkaSource) -> None:
        self._source = source

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._source._partitions_revoked(revoked, lost=False)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._source._partitions_assigned(assigned)

    async def on_partitions_lost(self, lost: set[TopicPartition]) -> None:
        await self._source._partitions_revoked(lost, lost=True)


class KafkaSource:
    """A consumer-group member over ``topics``: polls records, commits what the checkpoint holds.

    ``settings`` are kafka-python ``KafkaConsumer`` settings (security, timeouts, fetch sizes),
    passed through. ``on_assign`` / ``on_revoke`` receive partition names; see the module
    docstring for when they run. Offsets are committed only by :meth:`commit`.
    """

    def __init__(
        self,
        bootstrap: str,
        topics: Sequence[str],
        group_id: str,
        *,
        settings: Mapping[str, Any] | None = None,
        auto_offset_reset: str = "earliest",
        on_assign: Callback | None = None,
        on_revoke: Callback | None = None,
        on_lost: Callback | None = None,
    ) -> None:
        if not topics:
            raise ValueError("topics is empty; name at least one topic to consume")
        if auto_offset_reset not in ("earliest", "latest"):
            raise ValueError(f"auto_offset_reset is {auto_offset_reset!r}; use 'earliest' or 'latest'")
        self.bootstrap = bootstrap
        self.topics = tuple(topics)
        self.group_id = group_id
        self.on_assign = on_assign
        self.on_revoke = on_revoke
        self.on_lost = on_lost
        config = check_settings(settings or {}, _SOURCE_OWNED, "KafkaSource")
        config.setdefault("bootstrap_timeout_ms", int(BOOTSTRAP_TIMEOUT_S * 1000))
        # kafka-python backs reconnects off up to 30 s: a restarted broker would wait that long.
        config.setdefault("reconnect_backoff_max_ms", int(LONGEST_WAIT_S * 1000))
        self._names: dict[TopicPartition, str] = {}
        self._pending_seeks: dict[TopicPartition, int] = {}
        self._paused_all = False
        # While on_revoke runs: the partitions going away, and the commits asked for meanwhile.
        self._revoking: set[TopicPartition] = set()
        self._deferred: dict[TopicPartition, OffsetAndMetadata] | None = None
        self._failure_stop = False
        self._lock = threading.Lock()
        self.outage = Outage(bootstrap)
        """The broker's state as this member sees it: an outage being waited out, or none."""
        self._consumer: KafkaConsumer = connect(
            "KafkaSource",
            bootstrap,
            lambda: KafkaConsumer(
                bootstrap_servers=bootstrap,
                group_id=group_id,
                enable_auto_commit=False,
                auto_offset_reset=auto_offset_reset,
                **config,
            ),
        )
        install(self._consumer._fetcher, self._name)  # its poll returns Records, parsed in one loop per batch
        self._consumer.subscribe(topics=list(self.topics), listener=_Listener(self))
        self._await_topic_metadata()
        self._closed = False

    def _await_topic_metadata(self) -> None:
        """Wait (up to :data:`METADATA_TIMEOUT_S`) for the subscribed topics' partitions. Without them (a new consumer
        knows none before its first metadata refresh, ~100 ms after its bootstrap) the group's first assignment is
        empty and a rejoin follows the refresh; kafka-python 3.0.12 sometimes drops the SyncGroup answer of that
        rejoin, leaving the member with no partitions and no heartbeat until its session ends (dev broker: 4 of 210
        new groups read nothing for 15 s, and a test's first drain timed out; with this wait 0 of 150, none empty)."""
        cluster = self._consumer._client.cluster
        if all(cluster.partitions_for_topic(t) for t in self.topics):
            return
        update = cluster.request_update()  # the refresh subscribe() asked for; its listener sees the subscription
        try:
            self._consumer._net.run(self._consumer._manager.wait_for, update, int(METADATA_TIMEOUT_S * 1000))
        except kafka_errors.KafkaError as e:  # the first poll joins without them (and waits an outage out)
            log.debug("no metadata for %s before the first join: %r", self.topics, e)

    # -- Source protocol --------------------------------------------------------------------

    def poll(self, max_records: int, timeout: float) -> list[Record]:
        """Up to ``max_records`` records from the assigned partitions, waiting up to ``timeout`` s.

        Rebalances (and so ``on_revoke`` / ``on_assign``) happen inside this call.
        """
        try:
            batches = self._consumer.poll(timeout_ms=max(0, int(timeout * 1000)), max_records=max_records)
        except Exception as e:
            if not transient(e):
                raise
            time.sleep(self.outage.failed(e))  # the broker is gone or slow: wait it out, read nothing
            return []
        if batches or self._connected():
            self.outage.ok()
        else:  # the client logs and retries on its own, returning nothing: a broker gone quietly
            self.outage.failed(kafka_errors.KafkaConnectionError("no broker connected"))
        parts: list[list[Record]] = list(batches.values())  # Records already (daemon/io/kafka/records.py)
        if len(parts) == 1:
            return parts[0]
        return [r for part in parts for r in part]

    def seek(self, positions: Mapping[str, int]) -> None:
        """Read each named partition from the given next offset.

        Assigned partitions move at once; the others when (and if) they are assigned to this
        member, once. Names of other sources are ignored, as are topics not consumed here.
        """
        bad = {name: offset for name, offset in positions.items() if offset < 0}
        if bad:
            raise ValueError(f"negative positions {bad}; a position is a next offset, >= 0")
        with self._lock:
            assigned = self._consumer.assignment()
            for name, offset in positions.items():
                tp = self._tp(name)
                if tp is None:
                    continue
                if tp in assigned:
                    self._consumer.seek(tp, offset)
                    self._pending_seeks.pop(tp, None)
                else:
                    self._pending_seeks[tp] = offset

    def commit(self, positions: Mapping[str, int]) -> None:
        """Commit next offsets for the partitions this member owns; others are skipped.

        Called during ``on_revoke``, the commit happens right after the callback returns.
        Raises :class:`CommitFailed` when the group has moved to a new generation.
        """
        owned = self._consumer.assignment() | self._revoking
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        for name, offset in positions.items():
            tp = self._tp(name)
            if tp is None:
                continue
            if tp in owned:
                offsets[tp] = OffsetAndMetadata(offset, "", -1)
            else:
                log.debug("not committing %s: not assigned to this member", name)
        if self._deferred is not None:
            self._deferred.update(offsets)
            return
        if not offsets:
            return
        try:
            self._consumer.commit(offsets, timeout_ms=int(LOOP_COMMIT_TIMEOUT_S * 1000))
        except _COMMIT_ERRORS as e:
            raise CommitFailed(f"commit of {sorted(positions)} not accepted by group {self.group_id}: {e!r}") from None
        except Exception as e:
            if not transient(e):
                raise
            self.outage.failed(e)
            raise CommitFailed(f"commit of {sorted(positions)} not made, the broker is unreachable: {e!r}") from None

    def close(self, *, revoke: bool = True) -> None:
        """Leave the group. With ``revoke`` (a graceful stop) ``on_revoke`` runs first and its
        commit is made; ``revoke=False`` (a failure stop) leaves without committing anything."""
        if self._closed:
            return
        self._closed = True
        self._failure_stop = not revoke
        self._consumer.close(autocommit=False, timeout_ms=int(CLOSE_TIMEOUT_S * 1000))

    @property
    def exhausted(self) -> bool:
        """A Kafka topic never ends."""
        return False

    # -- backpressure and introspection -----------------------------------------------------

    def pause(self, partitions: Iterable[str] | None = None) -> None:
        """Stop fetching from the named partitions (all, by default) without leaving the group.

        Pausing all partitions also pauses partitions assigned later, until :meth:`resume`.
        """
        if partitions is None:
            self._paused_all = True
            tps = list(self._consumer.assignment())
        else:
            tps = [tp for tp in map(self._tp, partitions) if tp is not None]
        owned = self._consumer.assignment()
        self._consumer.pause(*[tp for tp in tps if tp in owned])

    def resume(self, partitions: Iterable[str] | None = None) -> None:
        """Fetch again from the named partitions (all, by default)."""
        if partitions is None:
            self._paused_all = False
            tps = list(self._consumer.paused())
        else:
            tps = [tp for tp in map(self._tp, partitions) if tp is not None]
        self._consumer.resume(*tps)

    @property
    def assignment(self) -> list[str]:
        """Names of the partitions this member owns now, sorted."""
        return sorted(self._name(tp) for tp in self._consumer.assignment())

    @property
    def reachable(self) -> bool:
        """No broker outage is being waited out (``/readyz``)."""
        return self.outage.since is None

    @property
    def problem(self) -> str | None:
        """Why the source is not reachable (the outage, for ``/readyz``); None when it is."""
        return self.outage.reason

    def _connected(self) -> bool:
        """Whether the client holds a connection to a broker of the cluster. (kafka-python's
        ``bootstrap_connected`` only tells a bootstrap in progress; the client's own view is read,
        pinned by kafka-python>=3.0,<4 as the revoke commit is.)"""
        client = self._consumer._client
        return any(client.connected(b.node_id) for b in client.cluster.brokers())

    def lag(self, positions: Mapping[str, int]) -> dict[str, int]:
        """Messages behind each owned partition's end: the highwater of the last fetch (no network call)
        less the daemon's next offset there."""
        out = {}
        for tp in self._consumer.assignment():
            high = self._consumer.highwater(tp)
            name = self._name(tp)
            if high is not None and name in positions:
                out[name] = max(0, int(high) - positions[name])
        return out

    @property
    def paused(self) -> list[str]:
        return sorted(self._name(tp) for tp in self._consumer.paused())

    def committed(self, partition: str) -> int | None:
        """The group's committed next offset of ``partition``, or None when there is none."""
        tp = self._tp(partition)
        if tp is None:
            raise ValueError(f"{partition!r} is not a Kafka partition name")
        result = self._consumer.committed(tp)
        return None if result is None else int(result)

    # -- rebalance listener (runs on kafka-python's IO thread) ------------------------------

    async def _partitions_revoked(self, tps: set[TopicPartition], *, lost: bool) -> None:
        if self._failure_stop:
            return  # leaving after a failure: no callback, no commit
        names = sorted(self._name(tp) for tp in tps)
        if lost and self.on_lost is not None:
            if names:
                self.on_lost(names)  # another member may own them already: nothing is written
            return
        self._revoking, self._deferred = set(tps), {}
        try:
            if self.on_revoke is not None and names:
                self.on_revoke(names)
        finally:
            offsets, self._deferred, self._revoking = self._deferred, None, set()
        if offsets and lost:
            log.warning(
                "partitions %s were lost to a rebalance before their commit; not committing"
                " (the new owner resumes from the last committed offset)",
                names,
            )
            return
        if offsets:
            # The coroutine behind KafkaConsumer.commit(): the blocking call cannot be used on
            # the IO thread this listener runs on. Pinned by kafka-python>=3.0,<4.
            try:
                await self._consumer._coordinator._commit_offsets_sync_async(
                    offsets, timeout_ms=int(COMMIT_TIMEOUT_S * 1000)
                )
            except Exception as e:
                if not isinstance(e, _COMMIT_ERRORS) and not transient(e):
                    raise
                # Raising here would fail the poll() the rebalance runs in; the records are
                # only re-delivered to the partitions' next owner.
                log.warning(
                    "commit of revoked partitions %s failed (%r); their next owner resumes from the previous commit",
                    names,
                    e,
                )

    def _partitions_assigned(self, tps: set[TopicPartition]) -> None:
        with self._lock:
            for tp in tps:
                offset = self._pending_seeks.pop(tp, None)
                if offset is not None:
                    self._consumer.seek(tp, offset)
        if self._paused_all and tps:
            self._consumer.pause(*tps)
        if self.on_assign is not None and tps:
            self.on_assign(sorted(self._name(tp) for tp in tps))

    # -- names ------------------------------------------------------------------------------

    def _name(self, tp: TopicPartition) -> str:
        name = self._names.get(tp)
        if name is None:
            name = self._names[tp] = partition_name(tp.topic, tp.partition)
        return name

    def _tp(self, name: str) -> TopicPartition | None:
        parsed = parse_partition_name(name)
        if parsed is None or parsed[0] not in self.topics:
            return None
        return TopicPartition(*parsed)
