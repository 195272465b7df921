"""The daemon's settings: one object, read in one place. Precedence: command line > ``DRIFTWARDEN_*`` environment
variables > the YAML config file > defaults (daemon/config_sources.py says how each layer is read).

>>> s = Settings.model_validate({"policies": ["p.yaml"], "source": {"kind": "file", "path": "events.jsonl"}})
>>> s.batch_size, str(s.store_path), str(s.dead_letter_path)
(1000, '.driftwarden/state.db', '.driftwarden/dead_letters.jsonl')
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from driftwarden.daemon.alerting.config import AlertingConfig, check_alerting
from driftwarden.daemon.config_sources import (
    ConfigError,
    environment_layer,
    interpolate,
    is_secret,
    merge,
    read_files,
    redact,
    shape_of,
)
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = ["ConfigError", "Settings"]

DEFAULT_BATCH_SIZE = 1000
"""Records per micro-batch: large enough to amortise the per-batch checkpoint, small enough for low latency."""

DEFAULT_CHECKPOINT_RECORDS = 20_000
"""Checkpoint at least this often (records): a crash replays at most this many records."""

DEFAULT_CHECKPOINT_SECONDS = 5.0
#: A stop's bound: well under the 30 s supervisors give before SIGKILL (systemd TimeoutStopSec, the chart's
#: grace period), and ample for a checkpoint and the phases that are not a training (trainers are left running).
DEFAULT_STOP_TIMEOUT = 10.0
"""...and at least this often (seconds). A batch with a decision is always checkpointed at once."""

DEFAULT_POLL_TIMEOUT = 0.5
"""Seconds a poll waits for records before the loop looks at schedules and signals again."""


class _Redacted(BaseModel):
    """A section whose repr (and so every log line that prints it) shows ``***`` for secrets."""

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            yield name, "***" if name and is_secret(name) and value is not None else redact(value)


class SourceConfig(_Redacted):
    """Where events come from. ``file``: JSONL/CSV/Parquet at ``path``; ``kafka``: ``topics`` on ``bootstrap``."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["file", "memory", "kafka"] = "file"
    path: str | None = Field(None, description="Events file (file source).")
    format: Literal["jsonl", "csv", "parquet"] | None = None
    pace: float = Field(0.0, ge=0, description="Replay speed by event time: 0 = as fast as possible, 1 = real time.")
    bootstrap: str | None = Field(None, description="Kafka bootstrap servers, e.g. 127.0.0.1:9092.")
    topics: list[str] = Field(default_factory=list, description="Kafka topics: predictions, features and labels.")
    group_id: str = Field("driftwarden", description="Kafka consumer group.")
    settings: dict[str, Any] = Field(
        default_factory=dict, description="kafka-python settings passed through (security_protocol, ssl_*, sasl_*)."
    )
    changelog_topic: str | None = Field(
        None,
        description="Compacted Kafka topic of per-partition state snapshots, written at each checkpoint and "
        "restored when a partition is assigned: needed to run more than one daemon in the group (off: state is local).",
    )
    labeled_topic: str | None = Field(
        None,
        description="Kafka topic of the joined labeled rows, keyed by model (needs changelog_topic): the next "
        "owner of a partition rebuilds its models' training windows from it (off: a new owner buffers afresh).",
    )
    labeled_retention: str = Field(
        "7d",
        description="How long labeled_topic keeps rows (its retention.ms when the daemon creates it): longer "
        "than a model takes to label the rows its retrain trains on.",
    )
    labeled_retention_bytes: int | None = Field(
        None, gt=0, description="Size bound of labeled_topic per partition (retention.bytes), if any."
    )
    auto_offset_reset: Literal["earliest", "latest"] = Field(
        "earliest", description="Where a partition without a committed offset or stored state starts."
    )

    @model_validator(mode="after")
    def _complete(self) -> SourceConfig:
        if self.kind == "file" and not self.path:
            raise ValueError("a file source needs 'path'")
        if self.kind == "kafka" and not (self.bootstrap and self.topics):
            raise ValueError("a kafka source needs 'bootstrap' and 'topics'")
        if self.labeled_topic and not self.changelog_topic:
            raise ValueError("'labeled_topic' moves labeled rows with the state: it needs 'changelog_topic'")
        return self


DEFAULT_MAX_RUNNING_ACTIONS = 4
"""Actions (retrains, verifications) running at once before ingestion pauses: each may hold a core."""

DEFAULT_MAX_PENDING_OUTPUTS = 100_000
"""Sink messages sent but not acknowledged before ingestion pauses: about 50 MB of small JSON."""


class SinksConfig(_Redacted):
    """Kafka topics the daemon writes to; each is off unless named. The JSONL files are always written."""

    model_config = ConfigDict(extra="forbid")

    bootstrap: str | None = Field(None, description="Kafka bootstrap servers (default: the Kafka source's).")
    settings: dict[str, Any] = Field(
        default_factory=dict, description="kafka-python producer settings (default: the source's client settings)."
    )
    decisions_topic: str | None = Field(
        None, description="Decisions and alerts as JSON, keyed by model; header 'key' is the idempotency key."
    )
    dead_letter_topic: str | None = Field(
        None, description="Records that do not decode or validate: the raw value, the reason in headers."
    )
    model_updated_topic: str | None = Field(
        None, description="A 'model-updated' event after each deploy or rollback, for serving apps to reload."
    )


class BackpressureConfig(BaseModel):
    """Bounds past which the daemon pauses consuming (Kafka: ``pause``, staying in the group) until they clear."""

    model_config = ConfigDict(extra="forbid")

    max_running_actions: int = Field(DEFAULT_MAX_RUNNING_ACTIONS, ge=1)
    max_pending_outputs: int = Field(DEFAULT_MAX_PENDING_OUTPUTS, ge=1)


class HttpConfig(BaseModel):
    """The HTTP face (daemon/http/): off unless ``listen`` is set (or ``--http`` given). The admin token comes
    from ``DRIFTWARDEN_TOKEN`` or a token file, never from this file."""

    model_config = ConfigDict(extra="forbid")

    listen: str | None = Field(None, description="HOST:PORT to serve on, e.g. 127.0.0.1:9808 (loopback unless told).")
    token_file: Path | None = Field(None, description="File whose first line is the admin bearer token.")


DEFAULT_MAX_RECORD_BYTES = 1 << 20
"""Bytes of one record before it is refused undecoded: a wide event is a few kB; a 200 MB line is an attack."""

DEFAULT_MAX_UNKNOWN_MODELS = 1000
"""Model names without a policy counted (and logged once) each; past it they are counted together."""


class InputConfig(BaseModel):
    """Limits on what an event may be (docs/input.md): past them a record is a dead letter."""

    model_config = ConfigDict(extra="forbid")

    max_record_bytes: int = Field(
        DEFAULT_MAX_RECORD_BYTES, ge=64, description="Bytes of one record; longer ones are refused before decoding."
    )
    max_ahead: str = Field(
        "1d", description="How far an event's ts may lie past the stream's watermark (or the broker's time)."
    )
    max_behind: str | None = Field(
        None, description="How far an event's ts may lie before the watermark (default: no limit; late data is fine)."
    )
    max_unknown_models: int = Field(
        DEFAULT_MAX_UNKNOWN_MODELS, ge=0, description="Names without a policy counted and logged one by one."
    )


class Settings(_Redacted):
    model_config = ConfigDict(extra="forbid")

    policies: list[Path] = Field(default_factory=list, description="Policy files, one per model.")
    source: SourceConfig = Field(default_factory=lambda: SourceConfig(kind="memory"))
    state_dir: Path = Field(Path(".driftwarden"), description="SQLite store, labeled buffers, sinks and runs.")
    batch_size: int = Field(DEFAULT_BATCH_SIZE, ge=1)
    poll_timeout: float = Field(DEFAULT_POLL_TIMEOUT, gt=0)
    checkpoint_records: int = Field(
        DEFAULT_CHECKPOINT_RECORDS, ge=1, description="Checkpoint after this many records at most."
    )
    checkpoint_seconds: float = Field(
        DEFAULT_CHECKPOINT_SECONDS, gt=0, description="Checkpoint after this many seconds at most."
    )
    stop_timeout: float = Field(
        DEFAULT_STOP_TIMEOUT,
        gt=0,
        description="Seconds a stop (SIGTERM) takes at most: the batch, the checkpoint, then actions other than"
        " trainings; running trainers are left to the next start, which adopts them.",
    )
    label_ttl: str = Field("7d", description="How long an unmatched prediction or label waits for its other half.")
    registry: str | None = Field(
        None,
        description="Model registry: a directory, or mlflow:<tracking uri> for MLflow's model registry "
        "(e.g. mlflow:sqlite:///var/lib/driftwarden/mlflow.db; needs the mlflow extra). "
        "Default: <state_dir>/registry.",
    )
    dead_letters: Path | None = Field(
        None, description="Dead-letter JSONL file (default: <state_dir>/dead_letters.jsonl)."
    )
    alerts: Path | None = Field(None, description="Alerts JSONL file (default: <state_dir>/alerts.jsonl).")
    execute: bool = Field(True, description="False: decisions are recorded, no action runs (--dry-run).")
    sinks: SinksConfig = Field(default_factory=SinksConfig)
    backpressure: BackpressureConfig = Field(default_factory=BackpressureConfig)
    http: HttpConfig = Field(default_factory=HttpConfig)
    input: InputConfig = Field(default_factory=InputConfig)
    alerting: AlertingConfig | None = Field(
        None, description="Alertmanager, apprise receivers and routes (docs/alerting.md); off when absent."
    )

    @property
    def store_path(self) -> Path:
        return self.state_dir / "state.db"

    @field_validator("registry", mode="before")
    @classmethod
    def _registry_text(cls, value: object) -> object:
        """A directory given as a path (``Settings(registry=Path(...))``) is its text."""
        return os.fspath(value) if isinstance(value, os.PathLike) else value

    @property
    def registry_location(self) -> str:
        """Where the model registry is: ``registry``, else ``<state_dir>/registry``.

        >>> Settings(state_dir="/var/lib/dw").registry_location, Settings(registry="mlflow:sqlite:///m.db").registry_location
        ('/var/lib/dw/registry', 'mlflow:sqlite:///m.db')
        """
        return self.registry or str(self.state_dir / "registry")

    @property
    def dead_letter_path(self) -> Path:
        return self.dead_letters or self.state_dir / "dead_letters.jsonl"

    @property
    def alerts_path(self) -> Path:
        return self.alerts or self.state_dir / "alerts.jsonl"

    @classmethod
    def load(cls, path: str | Path | None, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then the config file at ``path`` (``${VAR}`` interpolated), then ``DRIFTWARDEN_*`` variables
        of ``env`` (default: the process's), then ``overrides`` (the command line; ``None`` = not given).

        Raises :class:`ConfigError` naming each bad setting and where it came from, never a value (secrets).
        """
        env = os.environ if env is None else env
        shape = shape_of(cls)
        data: dict[str, Any] = {}
        if path is not None:
            try:
                loaded = yaml.safe_load(Path(path).read_text()) or {}
            except yaml.YAMLError as e:
                raise ConfigError(f"{path}: not valid YAML: {e}") from None
            if not isinstance(loaded, dict):
                raise ConfigError(f"{path}: a config file is a YAML mapping")
            errors = check_alerting(path) if "alerting" in loaded else []
            if errors:  # checked as policies are: every error, each at its file:line:col
                raise ConfigError("\n".join(errors))
            data = interpolate(loaded, env, str(path))
        layer = environment_layer(env, shape)
        data = merge(data, layer.values)
        data = merge(data, {k: v for k, v in overrides.items() if v is not None})
        data = read_files(data, shape, layer.origins)
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            lines = []
            for err in e.errors(include_url=False, include_input=False, include_context=False):
                loc = tuple(str(part) for part in err["loc"])
                where = f" (from {layer.origins[loc]})" if loc in layer.origins else ""
                lines.append(f"{'.'.join(loc) or 'config'}{where}: {err['msg']}")
            source = f"{path}: " if path is not None else ""
            raise ConfigError(source + "; ".join(lines)) from None
