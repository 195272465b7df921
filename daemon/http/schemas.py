"""The JSON API's pydantic models: FastAPI derives ``/api/v1/openapi.json`` from them.

>>> Page[Point](items=[Point(at=1, ts=2.0, value=0.5, threshold=0.8, drift=False)], total=1, offset=0, limit=10).total
1
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Generic, TypeVar

import numpy as np
from pydantic import BaseModel, Field

T = TypeVar("T")


def plain(value: Any) -> Any:
    """JSON-safe: numpy scalars to Python, NaN and infinities to None, mappings and sequences recursively.

    >>> plain({"a": float("nan"), "b": [np.float64(1.5), (2, float("inf"))]})
    {'a': None, 'b': [1.5, [2, None]]}
    """
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class Page(BaseModel, Generic[T]):
    """One page of a longer list: ``items`` from ``offset``, of ``total``."""

    items: list[T]
    total: int
    offset: int
    limit: int


class Probe(BaseModel):
    ok: bool
    reason: str


class ModelSummary(BaseModel):
    name: str
    policy: str = Field(description="The policy file this model runs.")
    champion: str = Field(description="The version serving ('' when none is known).")
    events: int
    monitors: list[str]
    rules: list[str]


class Status(BaseModel):
    version: str
    uptime_seconds: float
    started_at: float
    published_at: float = Field(description="When the loop published this state (epoch seconds).")
    ready: bool
    ready_reason: str
    records: int
    events: int
    dead_letters: dict[str, int]
    unrouted: int
    labels_joined: int
    next_index: int
    positions: dict[str, int]
    lag: dict[str, int]
    owned_partitions: list[str]
    checkpoints: int
    last_checkpoint_at: float | None
    running_actions: int
    paused: str | None
    models: list[ModelSummary]


class Point(BaseModel):
    at: int = Field(description="Event index of the signal.")
    ts: float = Field(description="Event time (epoch seconds).")
    value: float | None
    threshold: float | None
    drift: bool


class MonitorOut(BaseModel):
    name: str
    kind: str
    latest: dict[str, Any] = Field(description="The last signal as emitted: value, threshold, p_value, features...")
    signals: int
    points: int = Field(description="Signals kept in the history.")
    window_fill: float | None
    last_signal_at: float | None


class RuleOut(BaseModel):
    name: str
    action: str
    state: str = Field(description="inactive, pending or firing.")
    decisions: int
    silenced_until: float | None


class EvidenceOut(BaseModel):
    file: str
    url: str = Field(description="Where this daemon serves the report (relative to its root).")
    model: str
    rule: str
    at: int = Field(description="Event index of the firing alert.")
    ts: float | None = None
    window: list[int] = Field(description="Event indices [start, end) of the window the report shows.")
    severity: str | None = None
    summary: str | None = None


class ModelOut(BaseModel):
    name: str
    policy: str
    digest: str
    champion: str
    events: int
    labels_joined: int
    pending: dict[str, int]
    expired: dict[str, int]
    monitors: list[MonitorOut]
    rules: list[RuleOut]


class DecisionOut(BaseModel):
    key: str
    model: str
    rule: str
    action: str
    action_type: str
    at: int
    ts: float
    reason: str
    dry_run: bool
    severity: str


class ActionOut(BaseModel):
    key: str
    model: str
    rule: str
    action: str
    type: str
    at: int
    ts: float
    state: str
    version: str | None
    attempts: int
    created: float
    updated: float
    info: dict[str, Any]


class Step(BaseModel):
    seq: int
    wall: float
    type: str
    state: str | None
    detail: dict[str, Any]


class ActionDetail(ActionOut):
    steps: list[Step] = Field(description="Every recorded step, oldest first (the audit log).")


class AuditEntry(BaseModel):
    seq: int
    wall: float
    model: str | None
    type: str
    key: str | None
    detail: dict[str, Any]


class VersionOut(BaseModel):
    model: str
    version: str
    aliases: list[str]
    created: str | None
    parent: str | None = Field(description="The version it was trained from (lineage).")
    decision: str | None = Field(description="The decision that trained it.")
    metrics: dict[str, Any] | None


class RetrainRequest(BaseModel):
    action: str | None = Field(None, description="The policy's retrain action to run (default: its first).")
    reason: str = Field("", description="Why, for the audit log.")


class Accepted(BaseModel):
    key: str = Field(description="The decision's idempotency key; the action's state is at `location`.")
    location: str
    state: str


class PromoteRequest(BaseModel):
    version: str = Field(description="A version id (v0003) or an alias.")


class RollbackRequest(BaseModel):
    reason: str = "manual rollback"


class SilenceRequest(BaseModel):
    seconds: float = Field(gt=0, description="How long the rule's decisions are recorded but not acted upon.")
    reason: str = ""


class AdminResult(BaseModel):
    ok: bool
    detail: dict[str, Any]
