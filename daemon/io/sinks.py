"""Where the daemon's outputs go: files and Kafka topics, behind one small interface.

A :class:`Sink` takes JSON-able mappings with :meth:`~Sink.write` and makes them durable with
:meth:`~Sink.flush`; the checkpoint flushes every sink *before* its store transaction, so the
outputs of a batch are out before its offsets are committed (at-least-once: a crash between the
flush and the transaction replays the batch, and a replayed decision carries the same
idempotency key). This module has:

- :class:`JsonlSink`: JSON lines appended to a file (the alerts and dead-letter files).
- :class:`KafkaJsonSink`: JSON objects to a topic, keyed by model (a model's outputs stay in
  order), the object's ``type`` and decision ``key`` in the headers. The decisions-and-alerts
  topic is one of these.
- :class:`DeadLetterSink`: the JSONL file plus, optionally, a dead-letter topic that receives
  the *raw* value, byte for byte, with the reason and the source position in the headers.
- :class:`ModelUpdates`: a ``model-updated`` event after each deploy or rollback, sent and
  flushed at once (from the action's worker thread) so serving apps reload without waiting for
  the next checkpoint.
- :class:`Tee`: one sink writing to several.

>>> class Memory:
...     def __init__(self): self.items, self.flushed = [], 0
...     def write(self, obj): self.items.append(obj)
...     def flush(self): self.flushed += 1
>>> a, b = Memory(), Memory()
>>> t = Tee(a, b); t.write({"type": "alert"}); t.flush(); (a.items, b.flushed)
([{'type': 'alert'}], 1)
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

import orjson
from driftwarden.daemon.io.events import raw_fields
from driftwarden.daemon.io.private import open_private, private_folder
from driftwarden.deploy.states import ActionState

log = logging.getLogger("driftwarden.sinks")

MODEL_UPDATED = "model-updated"
"""The ``type`` of the event sent after a deploy or rollback."""

MAX_HEADER_CHARS = 1000
"""Characters of a dead letter's reason in a Kafka header: the value carries the record; a header stays small."""

UPDATE_STATES = frozenset({ActionState.DEPLOYED, ActionState.ROLLED_BACK})
"""Action states after which the serving model changed."""


class Sink(Protocol):
    """Takes JSON-able objects; :meth:`flush` returns once they are durable (or raises)."""

    def write(self, obj: Mapping[str, Any]) -> None: ...

    def flush(self) -> None: ...


class JsonlSink:
    """Append JSON lines to a file (alerts, dead letters), flushed on demand.

    Exactly once across restarts: the checkpoint records :meth:`mark` (the length once flushed)
    in its transaction, and a restart :meth:`rewind` s the file to it, so the lines of a batch that
    was appended but never checkpointed (a crash, a full disk) are written once, by its replay.

    >>> import tempfile, pathlib
    >>> sink = JsonlSink(pathlib.Path(tempfile.mkdtemp()) / "dl.jsonl")
    >>> sink.write({"offset": 0}); sink.flush(); mark = sink.mark()
    >>> sink.write({"offset": 1}); sink.flush()  # then the checkpoint fails: offset 1 is replayed
    >>> sink.rewind(mark), sink.path.read_text()
    (1, '{"offset":0}\\n')
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        private_folder(self.path.parent)
        self._lock = threading.Lock()
        self._pending: list[bytes] = []

    def write(self, obj: Mapping[str, Any]) -> None:
        with self._lock:
            self._pending.append(orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n")

    def flush(self) -> None:
        with self._lock:
            if self._pending:
                size = self.mark()
                try:
                    with open_private(self.path, "ab") as f:
                        f.writelines(self._pending)
                except OSError as e:  # a full disk: no line cut short left behind; the error names the file
                    with contextlib.suppress(OSError):
                        os.truncate(self.path, size)
                    if e.filename is None:
                        raise OSError(e.errno, e.strerror, str(self.path)) from e
                    raise
                self._pending = []

    def mark(self) -> int:
        """The file's length in bytes (after :meth:`flush`: everything written so far)."""
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def rewind(self, length: int) -> int:
        """Cut the file back to ``length`` bytes (a checkpoint's :meth:`mark`); return the lines cut."""
        with self._lock:
            size = self.mark()
            if size <= length:
                return 0
            with self.path.open("r+b") as f:
                f.seek(length)
                tail = f.read()
                f.truncate(length)
            return tail.count(b"\n") + (not tail.endswith(b"\n"))  # a line cut short counts too

    @property
    def name(self) -> str:
        """The key of its mark in the store: the file's absolute path."""
        return os.path.abspath(self.path)


def file_marks(sinks: Iterable[object]) -> dict[str, int]:
    """The :meth:`JsonlSink.mark` of every file sink among ``sinks`` (directly or as a
    :class:`DeadLetterSink`'s file), by :attr:`JsonlSink.name`: what a checkpoint records."""
    files = [s if isinstance(s, JsonlSink) else getattr(s, "marked", None) for s in sinks]
    return {f.name: f.mark() for f in files if isinstance(f, JsonlSink)}


class Tee:
    """Writes every object to each of ``sinks``; flushes them all."""

    def __init__(self, *sinks: Sink) -> None:
        self.sinks = sinks

    def write(self, obj: Mapping[str, Any]) -> None:
        for s in self.sinks:
            s.write(obj)

    def flush(self) -> None:
        for s in self.sinks:
            s.flush()

    @property
    def pending(self) -> int:
        return sum(getattr(s, "pending", 0) for s in self.sinks)

    def close(self) -> None:
        for s in self.sinks:
            close = getattr(s, "close", None)
            if close is not None:
                close()


def _dumps(obj: Mapping[str, Any]) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)


class KafkaJsonSink:
    """JSON objects to one Kafka topic: key = the object's ``model``, headers ``type`` and (for
    decisions) ``key``, the idempotency key consumers deduplicate on."""

    def __init__(
        self, bootstrap: str, topic: str, settings: Mapping[str, Any] | None = None, *, waiter: Any = None
    ) -> None:
        """``waiter``: a :class:`~driftwarden.daemon.io.kafka.outage.Waiter` that waits broker outages out."""
        from driftwarden.daemon.io.kafka.sink import KafkaSink

        self.topic = topic
        self._sink = KafkaSink(bootstrap, topic, waiter=waiter, **dict(settings or {}))

    def write(self, obj: Mapping[str, Any]) -> None:
        headers = {"type": str(obj.get("type", ""))}
        if obj.get("key"):
            headers["key"] = str(obj["key"])
        model = obj.get("model")
        self._sink.send(_dumps(obj), key=str(model).encode() if model else None, headers=headers)

    def flush(self) -> None:
        self._sink.flush()

    @property
    def pending(self) -> int:
        return self._sink.pending

    def close(self) -> None:
        self._sink.close()


class DeadLetterSink:
    """Dead letters to the JSONL file (``raw`` as exact text, or base64 with ``raw_encoding: base64``
    when the bytes are not UTF-8; ``code`` from :data:`~driftwarden.daemon.io.reasons.REASONS`) and,
    when configured, to a topic.

    ``write`` takes :meth:`driftwarden.daemon.io.events.DeadLetter.as_dict` with ``raw`` replaced by the
    original bytes and ``key`` the record's key (bytes or None). The topic gets those bytes
    unchanged as the value (so the producer's own tooling can read them), the record's key, and
    headers ``code``, ``reason``, ``source`` (partition
    name), ``offset`` and ``index``.
    """

    def __init__(self, file: Sink, topic: Any | None = None) -> None:
        self.file = file
        self.topic = topic  # a driftwarden.daemon.io.kafka.sink.KafkaSink

    def write(self, obj: Mapping[str, Any]) -> None:
        raw = obj.get("raw", b"")
        if isinstance(raw, str):
            raw = raw.encode()
        self.file.write({k: v for k, v in obj.items() if k not in ("key", "raw_encoding")} | raw_fields(raw))
        if self.topic is not None:
            headers = {
                "code": str(obj.get("code", "")),
                "reason": str(obj.get("reason", ""))[:MAX_HEADER_CHARS],
                "source": str(obj.get("partition", "")),
                "offset": str(obj.get("offset", "")),
                "index": str(obj.get("index", "")),
            }
            self.topic.send(raw, key=obj.get("key"), headers=headers)

    def flush(self) -> None:
        self.file.flush()
        if self.topic is not None:
            self.topic.flush()

    @property
    def marked(self) -> JsonlSink | None:
        """The file whose length the checkpoint records (see :class:`JsonlSink`); the topic gets a
        replayed batch's records again, with their source and offset headers to deduplicate on."""
        return self.file if isinstance(self.file, JsonlSink) else None

    @property
    def pending(self) -> int:
        return self.topic.pending if self.topic is not None else 0

    def close(self) -> None:
        if self.topic is not None:
            self.topic.close()


class ModelUpdates:
    """Sends ``{"type": "model-updated", "model", "version", "previous", "state", "action",
    "ts"}`` when an action reaches a state in :data:`UPDATE_STATES`; ``version`` is the model's
    champion after the change (what serving apps should load). Thread-safe; each event is flushed
    before :meth:`observe` returns, and a failed send is logged, never raised into the action."""

    def __init__(
        self, sink: Sink, champion: Callable[[str], str | None], clock: Callable[[], float] = time.time
    ) -> None:
        self.sink, self.champion, self.clock = sink, champion, clock
        self._lock = threading.Lock()

    def observe(self, item: Mapping[str, Any]) -> None:
        if item.get("type") != "action" or item.get("state") not in UPDATE_STATES:
            return
        model = str(item.get("model"))
        try:
            version = self.champion(model)
        except Exception as e:  # noqa: BLE001 - the registry is another component; report what the action said
            log.warning("cannot read the champion of %s (%s); sending the action's version", model, e)
            version = None
        event = {
            "type": MODEL_UPDATED,
            "model": model,
            "version": version or item.get("version"),
            "previous": item.get("previous"),
            "state": item.get("state"),
            "action": item.get("key"),
            "ts": self.clock(),
        }
        try:
            with self._lock:
                self.sink.write(event)
                self.sink.flush()
        except Exception as e:  # noqa: BLE001 - serving apps also poll the registry; never fail the deploy
            log.error("model-updated event for %s %s not delivered: %s", model, event["version"], e)
