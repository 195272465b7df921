"""The policy file format: pydantic models with unknown keys forbidden.

``driftwarden schema`` prints :func:`json_schema` for editor completion.

>>> p = Policy.model_validate({"version": 1, "model": "m", "monitors": {"e": {"kind": "adwin", "series": "error"}},
...                            "rules": [{"name": "r", "when": "e.drift", "do": "alert"}]})
>>> p.rules[0].do, p.monitors["e"].params()
('alert', {'series': 'error'})
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

BUILTIN_ACTIONS = ("alert",)
ACTION_TYPES = ("retrain", "alert")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class WindowSpec(Strict):
    """A tumbling window: ``{events: N}`` or ``{time: 10m}``."""

    events: int | None = Field(None, ge=1, description="Events per window.")
    time: str | None = Field(None, description="Event time per window, e.g. 10m.")

    @model_validator(mode="after")
    def _one(self) -> WindowSpec:
        if (self.events is None) == (self.time is None):
            raise ValueError("give exactly one of 'events' or 'time'")
        return self


class MonitorSpec(BaseModel):
    """A monitor: ``kind`` selects it; the other keys are that kind's parameters."""

    model_config = ConfigDict(extra="allow")

    kind: str = Field(description="Monitor kind, e.g. feature_drift, adwin, performance.")
    window: WindowSpec | None = Field(None, description="Window of a windowed monitor.")

    def params(self) -> dict[str, Any]:
        """The monitor constructor's arguments (``window`` spelled out as window_events/window_seconds)."""
        return dict(self.model_extra or {})


class ReferenceSpec(Strict):
    path: str = Field(description="Parquet or CSV file of reference data (feature columns), relative to the policy file.")


class Rule(Strict):
    """When ``when`` holds (for ``for``, and ``require`` holds too), do ``do`` — at most once per ``cooldown``."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    when: str | None = Field(None, description="CEL condition over the monitors' latest signals.")
    schedule: str | None = Field(None, description="Cron string (minute hour day month day-of-week), instead of 'when'.")
    for_: str | int | None = Field(None, alias="for", description="How long 'when' must hold: 'N windows' or a duration.")
    keep_firing_for: str | None = Field(None, description="Keep firing this long after 'when' stops holding.")
    require: str | None = Field(None, description="CEL precondition, e.g. labels.count >= 1000.")
    cooldown: str | None = Field(None, description="Minimum time between two firings (a repeat interval), e.g. 6h.")
    max_per_day: int | None = Field(None, ge=1, description="At most this many firings in any 24 hours.")
    do: str = Field(description="The action to run: a name under 'actions', or 'alert'.")
    dry_run: bool = Field(False, description="Emit and log decisions, execute nothing.")
    severity: Literal["info", "warning", "critical"] = "warning"
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _trigger(self) -> Rule:
        if (self.when is None) == (self.schedule is None):
            raise ValueError("a rule needs exactly one of 'when' (a condition) or 'schedule' (cron)")
        return self


class TrainSpec(Strict):
    entrypoint: str | None = Field(None, description="Python 'module:function' called as function(X, y, params) -> model.")
    command: str | list[str] | None = Field(None, description="A command with {data}, {output}, {reference}.")
    timeout: str = Field("30m", description="Kill training after this long.")
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one(self) -> TrainSpec:
        if (self.entrypoint is None) == (self.command is None):
            raise ValueError("give exactly one of 'entrypoint' or 'command'")
        return self


class DataSpec(Strict):
    last: int = Field(50_000, ge=10, description="Train on the most recent N labeled events.")
    labeled: bool = True


class DeploySpec(Strict):
    target: Literal["local"] = "local"
    path: str = Field(description="Serving directory (a symlink switched atomically).")


class Action(Strict):
    type: Literal["retrain", "alert"] | None = Field(None, description="Defaults to the action's name.")
    train: TrainSpec | None = None
    data: DataSpec = Field(default_factory=DataSpec)
    holdout: float = Field(0.2, gt=0, lt=1, description="Most recent share of the data held out for the gate.")
    metrics: list[str] = Field(default_factory=lambda: ["accuracy"])
    promote_if: str = Field("candidate.accuracy >= champion.accuracy", description="CEL over candidate.* and champion.*")
    retries: int = Field(2, ge=0, description="Retries of a temporary training failure.")
    deploy: DeploySpec | None = None
    rollback_if: str | None = None


class Policy(Strict):
    version: Literal[1] = Field(description="Policy format version.")
    model: str = Field(description="The model this policy watches (the events' 'model').")
    reference: ReferenceSpec | None = None
    monitors: dict[str, MonitorSpec] = Field(default_factory=dict)
    rules: list[Rule] = Field(default_factory=list)
    actions: dict[str, Action] = Field(default_factory=dict)

    def action_type(self, name: str) -> str:
        if name in BUILTIN_ACTIONS and name not in self.actions:
            return name
        spec = self.actions[name]
        return spec.type or name


def json_schema() -> dict[str, Any]:
    schema = Policy.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "driftwarden policy"
    return schema
