"""From the settings (and the command line's ``--events``/``--pace``/``--follow``) to the parts that
read and write: one factory for the source, one for the sinks. The only place that knows which
io class a config key stands for; io itself takes explicit arguments and knows no settings.

>>> import tempfile, pathlib
>>> from driftwarden.daemon.config import Settings
>>> d = pathlib.Path(tempfile.mkdtemp()); _ = (d / "a.jsonl").write_text('{"model": "m", "id": "1"}\\n')
>>> type(open_source(Settings())).__name__, type(open_source(Settings(), [d / "a.jsonl"])).__name__
('MemorySource', 'FileSource')
>>> open_source(Settings(), [d / "a.jsonl"], follow=True, pace=1.0)
Traceback (most recent call last):
...
driftwarden.daemon.wiring.SourceError: --follow needs a file: --events FILE or a file source in --config
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from driftwarden.daemon.config import Settings
from driftwarden.daemon.io.kafka.settings import producer_settings
from driftwarden.daemon.io.merge import MergedSource
from driftwarden.daemon.io.sinks import DeadLetterSink, KafkaJsonSink, Sink, Tee
from driftwarden.daemon.io.sources import FileSource, MemorySource, Source
from driftwarden.daemon.io.tail import TailSource

FOLLOWED_FORMATS = ("jsonl", "json", "ndjson")
"""What ``--follow`` can tail: line-delimited JSON (a CSV or Parquet file is not appended to by line)."""


class SourceError(ValueError):
    """The settings and options do not describe a source; the message says what to change."""


def open_source(
    settings: Settings,
    events: Sequence[Path] = (),
    *,
    pace: float | None = None,
    follow: bool = False,
) -> Source:
    """The source to read: ``events`` files (one, or several merged by event time, at ``pace``),
    with ``follow`` the one JSONL file of ``events`` or of the config's file source tailed as it
    grows, else the source ``settings.source`` describes (file, Kafka, or memory)."""
    if follow:
        return _followed(settings, pace, len(events))
    if events:
        return _files(events, pace or 0.0)
    return _configured(settings)


def _files(paths: Sequence[Path], pace: float) -> Source:
    """One file, or several merged by event time (e.g. predictions and labels in separate files)."""
    names = [p.name for p in paths]
    if len(set(names)) != len(names):
        raise SourceError(f"--events files need distinct names (they name the source positions): {names}")
    sources = [FileSource(p, pace=pace) for p in paths]
    return sources[0] if len(sources) == 1 else MergedSource(sources)


def _followed(settings: Settings, pace: float | None, files: int) -> Source:
    """``--follow``: the one JSONL file of ``--events`` (which the caller made the config's file
    source) or the config's file source, tailed."""
    src = settings.source
    if files > 1:
        raise SourceError("--follow follows one file; give predictions and labels in one --events file")
    if src.kind != "file" or not src.path:
        raise SourceError("--follow needs a file: --events FILE or a file source in --config")
    fmt = src.format or Path(src.path).suffix.lower().lstrip(".")
    if fmt not in FOLLOWED_FORMATS:
        raise SourceError(f"--follow reads JSONL only, not {fmt!r}")
    if pace:
        raise SourceError("--follow reads lines as they are written; --pace does not apply")
    return TailSource(Path(src.path))


def _configured(settings: Settings) -> Source:
    """The source ``settings.source`` describes."""
    src = settings.source
    if src.kind == "file":
        assert src.path is not None  # the config refuses a file source without a path
        return FileSource(Path(src.path), fmt=src.format, pace=src.pace)
    if src.kind == "kafka":
        from driftwarden.daemon.io.kafka.source import KafkaSource  # only a Kafka daemon loads kafka-python

        assert src.bootstrap is not None  # the config refuses a Kafka source without one
        return KafkaSource(
            src.bootstrap,
            src.topics,
            src.group_id,
            settings=src.settings,
            auto_offset_reset=src.auto_offset_reset,
        )
    return MemorySource(closed=False)


def kafka_target(settings: Settings) -> tuple[str, dict[str, Any]] | None:
    """(bootstrap, client settings) for the sinks: ``sinks.bootstrap`` or the Kafka source's."""
    s = settings.sinks
    bootstrap = s.bootstrap or (settings.source.bootstrap if settings.source.kind == "kafka" else None)
    if bootstrap is None:
        return None
    client = dict(settings.source.settings) if settings.source.kind == "kafka" else {}
    client.update(s.settings)
    return bootstrap, producer_settings(client)


def build_sinks(
    settings: Settings, file_dead_letters: Sink, file_alerts: Sink, waiter: Callable[[str], Any] | None = None
) -> tuple[DeadLetterSink, Sink, KafkaJsonSink | None, KafkaJsonSink | None]:
    """(dead letters, alerts, decisions, model-updated) sinks as ``settings.sinks`` asks: each
    Kafka topic is off unless named. ``waiter(bootstrap)`` makes the
    :class:`~driftwarden.daemon.io.kafka.outage.Waiter` with which the topics wait broker outages out."""
    s = settings.sinks
    target = kafka_target(settings)
    named = [t for t in (s.decisions_topic, s.dead_letter_topic, s.model_updated_topic) if t]
    if named and target is None:
        raise ValueError(f"sinks name Kafka topics {named} but no bootstrap: set sinks.bootstrap or use a kafka source")
    dlq = decisions = updates = None
    if target is not None:
        from driftwarden.daemon.io.kafka.sink import KafkaSink

        bootstrap, client = target
        wait = waiter(bootstrap) if waiter is not None else None
        if s.dead_letter_topic:
            dlq = KafkaSink(bootstrap, s.dead_letter_topic, waiter=wait, **client)
        if s.decisions_topic:
            decisions = KafkaJsonSink(bootstrap, s.decisions_topic, client, waiter=wait)
        if s.model_updated_topic:
            updates = KafkaJsonSink(bootstrap, s.model_updated_topic, client, waiter=wait)
    alerts: Sink = Tee(file_alerts, decisions) if decisions is not None else file_alerts
    return DeadLetterSink(file_dead_letters, dlq), alerts, decisions, updates
