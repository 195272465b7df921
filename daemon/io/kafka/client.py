"""Kafka source and sink: the only module of driftwarden that imports kafka-python.

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

Partition names are ``"kafka:<topic>:<partition>"``; positions are next offsets to read.
:class:`KafkaSink` sends raw bytes (JSON decisions and alerts, dead letters with the reason in
the headers, ``model-updated`` events) to one topic.

Both take client settings (``security_protocol``, ``ssl_*``, ``sasl_*``, ``client_id``,
timeouts...) as kafka-python's keyword names, passed through unchanged; settings that would
break the contract above are refused with a :class:`ValueError` that names them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from driftwarden.daemon.io.sources import Record
from kafka import KafkaConsumer, KafkaProducer, OffsetAndMetadata, TopicPartition
from kafka import errors as kafka_errors
from kafka.admin import KafkaAdminClient
from kafka.consumer.subscription_state import AsyncConsumerRebalanceListener

log = logging.getLogger(__name__)

PARTITION_PREFIX = "kafka:"
# A commit is a single round trip to the group coordinator; 30 s covers a coordinator failover.
COMMIT_TIMEOUT_S = 30.0
# Bootstrapping is a metadata round trip; 30 s is kafka-python's default and fails a wrong
# address with a clear error instead of hanging.
BOOTSTRAP_TIMEOUT_S = 30.0
# close() leaves the group (so the other members rebalance at once) and then gives up.
CLOSE_TIMEOUT_S = 10.0
# flush() waits for every outstanding delivery; a healthy broker acknowledges within a second.
FLUSH_TIMEOUT_S = 30.0

# Settings that KafkaSource / KafkaSink set themselves: taking them from the config would break
# commit-after-checkpoint, the bytes-in/bytes-out contract or the constructor's own arguments.
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
_SINK_OWNED = frozenset({"bootstrap_servers", "key_serializer", "value_serializer"})

Callback = Callable[[list[str]], None]

_COMMIT_ERRORS = (
    kafka_errors.CommitFailedError,
    kafka_errors.RebalanceInProgressError,
    kafka_errors.IllegalGenerationError,
    kafka_errors.UnknownMemberIdError,
    kafka_errors.KafkaTimeoutError,
)


class KafkaUnavailable(ConnectionError):
    """No broker answered at the bootstrap address within the bootstrap timeout."""


class CommitFailed(RuntimeError):
    """The group coordinator did not accept a commit: the group rebalanced (this member's
    generation is stale) or the coordinator did not answer in time. Nothing is lost: the
    partitions are read again from the previous commit by whoever owns them next."""


class SinkError(RuntimeError):
    """Messages sent to a :class:`KafkaSink` were not delivered."""


def partition_name(topic: str, partition: int) -> str:
    """``kafka:<topic>:<partition>``, the stream id records and checkpoints use.

    >>> partition_name("predictions", 3)
    'kafka:predictions:3'
    """
    return f"{PARTITION_PREFIX}{topic}:{partition}"


def parse_partition_name(name: str) -> tuple[str, int] | None:
    """The (topic, partition) of a Kafka partition name, or None for another source's name.

    >>> parse_partition_name("kafka:predictions:3"), parse_partition_name("file:a.jsonl")
    (('predictions', 3), None)
    """
    if not name.startswith(PARTITION_PREFIX):
        return None
    topic, sep, number = name[len(PARTITION_PREFIX) :].rpartition(":")
    if not sep or not topic or not number.isdigit():
        raise ValueError(f"partition name {name!r} is not of the form 'kafka:<topic>:<partition>'")
    return topic, int(number)


def _check_settings(settings: Mapping[str, Any], owned: frozenset[str], what: str) -> dict[str, Any]:
    clash = sorted(set(settings) & owned)
    if clash:
        raise ValueError(f"{what} sets {', '.join(clash)} itself; remove {clash} from the Kafka settings")
    return dict(settings)


def _client_call(what: str, bootstrap: str, make: Callable[[], Any]) -> Any:
    """Build a kafka-python client, turning its errors into ours."""
    try:
        return make()
    except kafka_errors.KafkaConfigurationError as e:
        raise ValueError(f"invalid Kafka settings for the {what}: {e}") from None
    except kafka_errors.KafkaTimeoutError as e:
        raise KafkaUnavailable(f"no Kafka broker reachable at {bootstrap} for the {what}: {e}") from None


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
        config = _check_settings(settings or {}, _SOURCE_OWNED, "KafkaSource")
        config.setdefault("bootstrap_timeout_ms", int(BOOTSTRAP_TIMEOUT_S * 1000))
        self._names: dict[TopicPartition, str] = {}
        self._pending_seeks: dict[TopicPartition, int] = {}
        self._paused_all = False
        # While on_revoke runs: the partitions going away, and the commits asked for meanwhile.
        self._revoking: set[TopicPartition] = set()
        self._deferred: dict[TopicPartition, OffsetAndMetadata] | None = None
        self._failure_stop = False
        self._lock = threading.Lock()
        self._consumer: KafkaConsumer = _client_call(
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
        self._consumer.subscribe(topics=list(self.topics), listener=_Listener(self))
        self._closed = False

    # -- Source protocol --------------------------------------------------------------------

    def poll(self, max_records: int, timeout: float) -> list[Record]:
        """Up to ``max_records`` records from the assigned partitions, waiting up to ``timeout`` s.

        Rebalances (and so ``on_revoke`` / ``on_assign``) happen inside this call.
        """
        batches = self._consumer.poll(timeout_ms=max(0, int(timeout * 1000)), max_records=max_records)
        out: list[Record] = []
        for tp, msgs in batches.items():
            name = self._name(tp)
            out.extend(
                [
                    Record(
                        m.value,
                        name,
                        m.offset,
                        m.timestamp / 1000.0 if m.timestamp >= 0 else None,
                        m.key,
                    )
                    for m in msgs
                ]
            )
        return out

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
            self._consumer.commit(offsets, timeout_ms=int(COMMIT_TIMEOUT_S * 1000))
        except _COMMIT_ERRORS as e:
            raise CommitFailed(f"commit of {sorted(positions)} not accepted by group {self.group_id}: {e!r}") from None

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
        """A bootstrap broker is connected (``/readyz``)."""
        return bool(self._consumer.bootstrap_connected())

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
            except _COMMIT_ERRORS as e:
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


class KafkaSink:
    """Sends raw bytes to one topic. Deliveries are asynchronous; :meth:`flush` waits for them
    and raises :class:`SinkError` if any failed, so a checkpoint never gets ahead of its output.

    ``settings`` are kafka-python ``KafkaProducer`` settings, passed through (its defaults are
    ``acks="all"`` and an idempotent producer).
    """

    def __init__(self, bootstrap: str, topic: str, **settings: Any) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        config = _check_settings(settings, _SINK_OWNED, "KafkaSink")
        config.setdefault("bootstrap_timeout_ms", int(BOOTSTRAP_TIMEOUT_S * 1000))
        self._errors: list[BaseException] = []
        self._errors_lock = threading.Lock()
        self._pending = 0
        self._producer: KafkaProducer = _client_call(
            "KafkaSink", bootstrap, lambda: KafkaProducer(bootstrap_servers=bootstrap, **config)
        )

    def send(self, value: bytes, key: bytes | None = None, headers: Mapping[str, str] | None = None) -> None:
        """Queue one message; ``headers`` values are sent UTF-8 encoded."""
        encoded = [(k, v.encode()) for k, v in headers.items()] if headers else None
        try:
            future = self._producer.send(self.topic, value=value, key=key, headers=encoded)
        except kafka_errors.KafkaError as e:
            raise SinkError(f"cannot send to {self.topic}: {e}") from e
        with self._errors_lock:
            self._pending += 1
        future.add_callback(self._delivered)
        future.add_errback(self._failed)

    def flush(self, timeout: float = FLUSH_TIMEOUT_S) -> None:
        """Wait until every queued message is acknowledged; raise :class:`SinkError` otherwise."""
        try:
            self._producer.flush(timeout=timeout)
        except kafka_errors.KafkaTimeoutError as e:
            raise SinkError(f"messages to {self.topic} not acknowledged within {timeout} s: {e}") from e
        with self._errors_lock:
            errors, self._errors = self._errors, []
        if errors:
            raise SinkError(f"{len(errors)} message(s) to {self.topic} not delivered; first: {errors[0]!r}")

    @property
    def pending(self) -> int:
        """Messages sent but not yet acknowledged (or failed): what backpressure watches."""
        return self._pending

    def close(self) -> None:
        self._producer.close(timeout=CLOSE_TIMEOUT_S)

    def _delivered(self, _metadata: Any) -> None:
        with self._errors_lock:
            self._pending -= 1

    def _failed(self, exc: BaseException) -> None:
        with self._errors_lock:
            self._pending -= 1
            self._errors.append(exc)


def ensure_topics(
    bootstrap: str,
    partitions: Mapping[str, int],
    *,
    configs: Mapping[str, Mapping[str, str]] | None = None,
    **settings: Any,
) -> None:
    """Create the topics that do not exist yet (replication factor: the broker's default), with
    ``configs[topic]`` as their topic configs (e.g. ``{"cleanup.policy": "compact"}``).

    For the dev broker, the demo and tests; production topics are usually made by their owners.
    """
    admin = _client_call("admin client", bootstrap, lambda: KafkaAdminClient(bootstrap_servers=bootstrap, **settings))
    try:
        existing = set(admin.list_topics())
        missing = {name: n for name, n in partitions.items() if name not in existing}
        if missing:
            try:
                admin.create_topics(
                    {
                        name: {"num_partitions": n, "configs": dict((configs or {}).get(name, {}))}
                        for name, n in missing.items()
                    },
                    wait_for_metadata=True,
                )
            except kafka_errors.TopicAlreadyExistsError:
                pass  # another process created it meanwhile
    finally:
        admin.close()


@dataclass(frozen=True, slots=True)
class Message:
    """A message as :func:`read_messages` returns it, headers included."""

    partition: str
    offset: int
    value: bytes | None
    key: bytes | None
    headers: dict[str, str]
    ts: float | None


def read_messages(bootstrap: str, topic: str, *, timeout: float = 10.0, **settings: Any) -> list[Message]:
    """Every message in ``topic`` now, from the beginning, without joining a group.

    For tests, the CLI and debugging (decisions, alerts, the dead-letter topic); raises
    :class:`TimeoutError` if the topic's current end is not reached within ``timeout`` s.
    """
    consumer = _client_call(
        "reader",
        bootstrap,
        lambda: KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, **settings),
    )
    try:
        numbers = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, n) for n in sorted(numbers)]
        if not tps:
            return []
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        deadline = time.monotonic() + timeout
        out: list[Message] = []
        while any(consumer.position(tp) < end[tp] for tp in tps):
            if time.monotonic() > deadline:
                raise TimeoutError(f"read {len(out)} messages of {topic}, not its end, in {timeout} s")
            for tp, msgs in consumer.poll(timeout_ms=200).items():
                name = partition_name(tp.topic, tp.partition)
                out.extend(
                    Message(
                        name,
                        m.offset,
                        m.value,
                        m.key,
                        {k: (v or b"").decode("utf-8", "replace") for k, v in m.headers or ()},
                        m.timestamp / 1000.0 if m.timestamp >= 0 else None,
                    )
                    for m in msgs
                    if m.offset < end[tp]
                )
        return sorted(out, key=lambda m: (m.partition, m.offset))
    finally:
        consumer.close(autocommit=False)
