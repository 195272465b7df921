"""The policy file format: pydantic models with unknown keys forbidden.

``driftwarden schema`` prints :func:`json_schema` for editor completion. A monitor entry's keys
are its kind's constructor arguments: one model per kind is derived from the constructor
signatures in :data:`driftwarden.detectors.registry.MONITORS` (add a kind there and the policy format, the
JSON Schema and docs/policy-reference.md know it), with ``window: {events: N} | {time: 10m}`` in
place of ``window_events``/``window_seconds``.

>>> p = Policy.model_validate({"version": 1, "model": "m", "monitors": {"e": {"kind": "adwin", "series": "error"}},
...                            "rules": [{"name": "r", "when": "e.drift", "do": "alert"}]})
>>> p.rules[0].do, p.monitors["e"].params()
('alert', {'series': 'error'})
>>> sorted(MONITOR_MODELS["adwin"].model_fields)
['clock', 'delta', 'direction', 'grace_period', 'kind', 'series']
"""

from __future__ import annotations

import builtins
import inspect
import math
import sys
import typing
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from driftwarden.detectors.registry import MONITORS
from driftwarden.policies.names import model_name_problem
from pydantic import BaseModel, ConfigDict, Field, StrictInt, create_model, field_validator, model_validator

BUILTIN_ACTIONS = ("alert",)
ACTION_TYPES = ("retrain", "alert")
SEVERITIES = ("info", "warning", "critical")

WINDOW_PARAMS = ("window_events", "window_seconds")
"""Constructor arguments a policy writes as ``window: {events: N}`` or ``window: {time: 10m}``."""

PARAM_DOCS: dict[str, str] = {
    "series": "What the detector watches: a feature or attribute name, `prediction`, `score`, "
    "`label`, `error` (0/1 mistakes of labeled predictions) or `residual` (label - prediction).",
    "features": "Feature names to compare, or `all` (every feature of the first batch).",
    "method": "Two-sample test: `auto` (Evidently's choice per column) or ks, psi, wasserstein, "
    "jensenshannon, chisquare, ...; eddm's: cusum (the likelihood-ratio CUSUM of the distances between errors, "
    "the calibrated default) or river (River's EDDM exactly, with alpha and beta).",
    "threshold": "The value the statistic is compared with (the kind's default when omitted).",
    "drift_share": "Share of drifted features at which the whole window counts as drifted.",
    "correction": "Multiple-test correction of per-feature p-values: none, bonferroni or bh.",
    "per_feature": "Per-feature overrides: `{feature: {method: ..., threshold: ...}}`.",
    "reference": "Reference to compare with (kind-specific); kinds with `features` default to the policy's "
    "`reference` file, else the first window.",
    "reference_mode": "`fixed` reference, or `rolling` (each window is the next one's reference).",
    "metric": "The metric computed per window, e.g. accuracy, f1, mae, rmse.",
    "tolerance": "Without a threshold: how far below the first window's value counts as degraded.",
    "positive": "The positive class.",
    "delta": "Confidence parameter (smaller: fewer false alarms, later detection); adwin's, left out: 0.002, and "
    "0.05 on 0/1 series (error, label).",
    "clock": "How often (in updates) ADWIN checks for a change.",
    "memory": "DDM re-based: the DDM in charge has seen between memory/2 and memory values (null: River's DDM, "
    "cumulative since its start).",
    "grace_period": "Updates before the first check.",
    "min_instances": "Updates before the first check.",
    "alpha": "Significance level / forgetting factor of the detector.",
    "direction": "Which changes are drift: up, down or both (default: up on error and loss-like series and for "
    "the error-rate kinds, else both); a change the other way is a signal with drift false.",
    "standardize": "Divide the series by its warm-up sd, so delta and threshold are in sds (false: River's scale).",
    "members": "Member detectors and their parameters, "
    "e.g. {adwin: {delta: 0.05}, hddm_a: {drift_confidence: 0.0001}}.",
    "restart": "After a fall in the error (a down signal) the members other than ADWIN start over.",
    "merge": "Member alarms within this many values after a reported change the same way are folded into it (0: off).",
    "window_size": "Sliding window length.",
    "stat_size": "Length of the most recent part compared with the rest of the window.",
    "seed": "Random seed (deterministic runs).",
    "warm_start": "Updates before the first alarm.",
    "warning_threshold": "Warning level in standard deviations.",
    "drift_threshold": "Drift level in standard deviations.",
    "beta": "EDDM's drift level (method river).",
    "drift_confidence": "Confidence of the drift test (smaller: fewer false alarms, later detection); hddm_a's, "
    "left out: 0.0003 with bound bernstein, River's 0.001 with bound hoeffding; hddm_w's: 0.001 (bernstein), 1e-5 "
    "(hoeffding).",
    "bound": "The HDDM test's bound: bernstein (variance-aware, the calibrated default) or hoeffding (River's "
    "detector exactly).",
    "warning_confidence": "Confidence of the warning test.",
    "lambda_val": "Weight of the newest value in the moving average; hddm_w's, left out: 0.003 (bound bernstein), "
    "0.005 (bound hoeffding; River's is 0.05).",
    "attribute": "Group attribute (from attributes or features); a list makes intersectional groups.",
    "measure": "`difference` (max - min) or `ratio` (min / max) between groups.",
    "confidence": "Confidence level of the intervals.",
    "require_interval": "Drift only when the whole confidence interval is beyond the threshold.",
    "min_group_size": "Groups smaller than this are reported but not judged.",
    "bias_drift": "Report the change of the gap against a reference instead of the gap.",
    "four_fifths": "Drift when the selection-rate ratio falls below 0.8 (EEOC rule).",
    "warmup": "Values that estimate the reference mean and standard deviation.",
    "mean": "Reference mean (estimated during warmup when omitted).",
    "sd": "Reference standard deviation (estimated during warmup when omitted).",
}
"""One-line meanings of monitor parameters for the schema and docs/policy-reference.md."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


MAX_WINDOW_EVENTS = 10_000_000
"""Events of one window: a window's columns are held in memory (10 M rows of a few features is ~1 GB)."""


class WindowSpec(Strict):
    """A tumbling window: ``{events: N}`` or ``{time: 10m}``."""

    events: StrictInt | None = Field(None, ge=1, le=MAX_WINDOW_EVENTS, description="Events per window.")
    time: str | None = Field(None, description="Event time per window, e.g. 10m.")

    @model_validator(mode="after")
    def _one(self) -> WindowSpec:
        if (self.events is None) == (self.time is None):
            raise ValueError("give exactly one of 'events' or 'time'")
        return self


class MonitorBase(Strict):
    """A monitor: ``kind`` selects it; the other keys are that kind's parameters."""

    kind: str

    def params(self) -> dict[str, Any]:
        """The keys the policy set (constructor arguments; ``window`` is spelled out by the loader)."""
        return self.model_dump(by_alias=True, exclude={"kind", "window"}, exclude_unset=True)

    def definition(self) -> dict[str, Any]:
        """Every parameter with defaults filled in: two entries that behave the same compare equal."""
        return self.model_dump(by_alias=True, mode="json")


def _annotation(cls: type, name: str, raw: Any) -> Any:
    """The parameter's type, evaluated in the monitor's module; ``Any`` when it cannot be."""
    if raw is inspect.Parameter.empty:
        return Any
    if not isinstance(raw, str):
        return raw
    module = sys.modules.get(cls.__module__)
    namespace = {**vars(typing), **vars(builtins), **(vars(module) if module else {})}
    try:
        hint = eval(raw, namespace)  # noqa: S307 - annotations of our own registered classes
        typing.get_type_hints(create_model("_Probe", x=(hint, ...)))
        return hint
    except Exception:  # noqa: BLE001 - an annotation we cannot evaluate accepts anything
        return Any


def _default(value: Any) -> Any:
    if value is inspect.Parameter.empty:
        return ...
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def monitor_model(kind: str, cls: type) -> type[MonitorBase]:
    """The policy model of one monitor kind, derived from its constructor signature."""
    fields: dict[str, Any] = {"kind": (Literal[kind], Field(description="Monitor kind."))}  # type: ignore[valid-type]
    extra = "forbid"
    windowed = False
    for name, p in inspect.signature(cls).parameters.items():
        if p.kind is p.VAR_POSITIONAL:
            continue
        if p.kind is p.VAR_KEYWORD:
            extra = "allow"
            continue
        if name in WINDOW_PARAMS:
            windowed = True
            continue
        doc = PARAM_DOCS.get(name, f"Parameter of {cls.__name__} (see its docstring).")
        field_name = name if not (hasattr(BaseModel, name) or name.startswith("model_")) else f"{name}_param"
        fields[field_name] = (
            _annotation(cls, name, p.annotation),
            Field(_default(p.default), alias=name if field_name != name else None, description=doc),
        )
    if windowed:
        fields["window"] = (WindowSpec | None, Field(None, description="Tumbling window: {events: N} or {time: 10m}."))
    summary = (inspect.getdoc(cls) or "").split("\n\n")[0].replace("\n", " ")
    model = create_model(  # type: ignore[call-overload]
        f"Monitor_{kind}",
        __base__=MonitorBase,
        __doc__=summary or f"The {kind} monitor.",
        **fields,
    )
    model.model_config = ConfigDict(extra=extra, populate_by_name=True)  # type: ignore[typeddict-item]
    model.model_rebuild(force=True)
    return model  # type: ignore[no-any-return]


MONITOR_MODELS: dict[str, type[MonitorBase]] = {
    kind: monitor_model(kind, cls) for kind, cls in sorted(MONITORS.items())
}
"""The policy model of every monitor kind."""

if TYPE_CHECKING:
    MonitorSpec = MonitorBase
else:
    MonitorSpec = Annotated[Union[tuple(MONITOR_MODELS.values())], Field(discriminator="kind")]  # noqa: UP007


class ReferenceSpec(Strict):
    """Reference data for drift monitors."""

    path: str = Field(
        description="Parquet or CSV file of reference data (feature columns), relative to the policy file."
    )


class JoinSpec(Strict):
    """How predictions and labels are joined by id."""

    duplicates: Literal["keep_last", "keep_first"] = Field(
        "keep_last",
        description="A second prediction (or label) with the id of a pending one: keep_last replaces it, "
        "keep_first drops the newcomer. Either way it is counted.",
    )


class Rule(Strict):
    """When ``when`` holds (for ``for``, and ``require`` holds too), do ``do`` — at most once per ``cooldown``."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="Unique name of the rule in this policy.")
    when: str | None = Field(
        None, description="CEL condition over the context (monitors' latest signals, counts, ...)."
    )
    schedule: str | None = Field(
        None, description="Cron string (minute hour day month day-of-week), instead of 'when'."
    )
    for_: str | StrictInt | None = Field(
        None,
        alias="for",
        description="How long 'when' must hold before the rule fires: 'N windows' (consecutive evaluations) "
        "or a duration.",
    )
    keep_firing_for: str | None = Field(
        None,
        description="Stay firing this long after 'when' stops holding (a flap does not restart 'for').",
    )
    require: str | None = Field(
        None, description="CEL precondition, e.g. labels.count >= 1000; the rule fires only when it holds too."
    )
    cooldown: str | None = Field(None, description="Minimum time between two firings (a repeat interval), e.g. 6h.")
    max_per_day: int | None = Field(None, ge=1, description="At most this many firings in any 24 hours.")
    inhibited_by: list[str] = Field(
        default_factory=list,
        description="Action names or types (e.g. retrain) whose decisions for the model mute this rule for "
        "their span of event time (the action's inhibits_for).",
    )
    do: str = Field(description="The action to run: a name under 'actions', or 'alert'.")
    dry_run: bool = Field(False, description="Emit and log decisions, execute nothing.")
    severity: Literal["info", "warning", "critical"] = Field(
        "warning", description="Carried into decisions and alerts."
    )
    labels: dict[str, str] = Field(
        default_factory=dict, description="Carried into decisions and alerts (routing, ownership)."
    )
    annotations: dict[str, str] = Field(
        default_factory=dict,
        description="Carried into decisions and alerts: summary, description, runbook_url; templates such as "
        "'{monitor} at {value:.3f} (threshold {threshold})' (see docs/alerting.md).",
    )
    notify: bool | None = Field(
        None,
        description="Send an alert (Alertmanager, notifiers) while the rule fires; default: true for 'do: alert'.",
    )
    resolve_after: str | int | None = Field(
        None,
        description="When a firing alert resolves: 'N evaluations' (that many in a row where 'when' did not hold) or "
        "a duration of event time since 'when' last held (for edge detectors such as adwin, whose drift holds for "
        "one signal). Default: as Prometheus, at the first evaluation where 'when' no longer holds "
        "(after keep_firing_for).",
    )

    @model_validator(mode="after")
    def _trigger(self) -> Rule:
        if (self.when is None) == (self.schedule is None):
            raise ValueError("a rule needs exactly one of 'when' (a condition) or 'schedule' (cron)")
        return self


class TrainSpec(Strict):
    """How a candidate model is trained."""

    entrypoint: str | None = Field(
        None, description="Python 'module:function' called as function(X, y, params) -> model."
    )
    command: str | list[str] | None = Field(None, description="A command with {data}, {output}, {reference}.")
    timeout: str = Field("30m", description="Kill training after this long.")
    params: dict[str, Any] = Field(default_factory=dict, description="Passed to the trainer.")

    @model_validator(mode="after")
    def _one(self) -> TrainSpec:
        if (self.entrypoint is None) == (self.command is None):
            raise ValueError("give exactly one of 'entrypoint' or 'command'")
        return self


class DataSpec(Strict):
    """Which buffered events a retrain uses."""

    last: int = Field(50_000, ge=10, description="Train on the most recent N labeled events.")
    labeled: bool = Field(True, description="Only events whose label arrived.")


class DeploySpec(Strict):
    """Where a promoted model goes."""

    target: Literal["local", "http"] = Field(
        "local",
        description="local: switch the serving directory; http: switch it, then POST the model server's reload "
        "endpoint and GET its health (a failure switches back).",
    )
    path: str = Field(description="Serving directory (a symlink switched atomically).")
    url: str | None = Field(None, description="http target: the reload endpoint, POSTed after the switch.")
    health: str | None = Field(
        None, description="http target: the health endpoint, GET after reloading; 2xx is healthy."
    )
    timeout: str = Field("10s", description="http target: timeout of each call.")

    @model_validator(mode="after")
    def _http(self) -> DeploySpec:
        if self.target == "http" and not self.url:
            raise ValueError("an http deploy target needs 'url' (the model server's reload endpoint)")
        return self


class SignificanceSpec(Strict):
    """The candidate must beat the champion beyond noise on the held-out (or shadow) rows."""

    test: Literal["mcnemar", "bootstrap"] = Field(
        "mcnemar", description="McNemar's exact test on paired errors, or a seeded paired bootstrap of 'metric'."
    )
    alpha: float = Field(0.05, gt=0, lt=1, description="One-sided significance level.")
    metric: str = Field("accuracy", description="bootstrap: the metric compared.")
    resamples: int = Field(1000, ge=100, description="bootstrap: number of resamples.")
    seed: int = Field(0, description="bootstrap: random seed (the gate is reproducible).")


class FairnessSpec(Strict):
    """The candidate must not widen the demographic-parity gap of a group attribute."""

    attribute: str = Field(description="A feature or event attribute naming the groups.")
    max_increase: float = Field(
        0.0, ge=0, le=1, description="How much wider than the champion's gap the candidate's may be."
    )
    max_gap: float | None = Field(None, gt=0, le=1, description="An absolute bound on the candidate's gap.")


class WindowedCheck(Strict):
    """A check on live labeled traffic."""

    window: int = Field(ge=10, description="Labeled live events to wait for.")


class Action(Strict):
    """What a rule triggers: a retrain (train → gate → register → deploy) or an alert."""

    type: Literal["retrain", "alert"] | None = Field(None, description="Defaults to the action's name.")
    train: TrainSpec | None = Field(None, description="Required for a retrain.")
    data: DataSpec = Field(default_factory=DataSpec, description="The training data window.")
    holdout: float = Field(0.2, gt=0, lt=1, description="Most recent share of the data held out for the gate.")
    metrics: list[str] = Field(
        default_factory=lambda: ["accuracy"], description="Metrics the gate computes for candidate and champion."
    )
    promote_if: str = Field(
        "candidate.accuracy >= champion.accuracy", description="CEL over candidate.* and champion.*"
    )
    retries: int = Field(2, ge=0, description="Retries of a temporary training failure.")
    inhibits_for: str | None = Field(
        None,
        description="Event time a decision for this action mutes the model's rules that name it in "
        "'inhibited_by', from the decision's event time (so replay and live runs decide alike); "
        "default: a retrain's train.timeout, 0 for an alert.",
    )
    deploy: DeploySpec | None = Field(None, description="Deploy the promoted model here.")
    rollback_if: str | None = Field(
        None,
        description="CEL over live.* (the deployed model on the verify window), champion.* (the version it "
        "replaced, on the same rows) and candidate.* (the deployed model at the gate): roll back when it holds.",
    )
    significance: SignificanceSpec | None = Field(None, description="Also require a significant improvement.")
    fairness: FairnessSpec | None = Field(None, description="Also require that a group gap does not widen.")
    shadow: WindowedCheck | None = Field(
        None,
        description="Score the candidate on this many live labeled events without serving it; "
        "the gate decides on them.",
    )
    verify: WindowedCheck | None = Field(
        None, description="After a deploy, check rollback_if on this many live labeled events."
    )


class Policy(Strict):
    """One policy file: what to watch for one model, or for a fleet of models, and what to do about it."""

    version: Literal[1] = Field(description="Policy format version.")
    model: str | None = Field(
        None, description="The model this policy watches (the events' 'model'); or give 'models' for a fleet."
    )
    models: str | list[str] | None = Field(
        None,
        description="A fleet: model names and globs ('shop-*', 'eu-?', '[ab]-*'), one string or a list. A model "
        "first seen in the stream that matches gets its own pipeline; the most specific policy wins "
        "(docs/scale.md).",
    )
    where: dict[str, str | int | bool | list[str | int | bool]] = Field(
        default_factory=dict,
        description="Also select by event attributes: attribute -> value or list of values; a model is admitted "
        "at its first event whose attributes match all of them.",
    )
    overrides: dict[str, dict[str, dict[str, Any]]] = Field(
        default_factory=dict,
        description="Per-model monitor parameters: model name or glob -> monitor -> parameters "
        "(e.g. {'shop-eu-*': {inputs: {threshold: 0.2}}}); a more specific pattern wins key by key.",
    )

    @field_validator("model")
    @classmethod
    def _model_name(cls, value: str | None) -> str | None:
        problem = None if value is None else model_name_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("models")
    @classmethod
    def _model_names(cls, value: str | list[str] | None) -> str | list[str] | None:
        for name in [value] if isinstance(value, str) else value or []:
            problem = model_name_problem(name)
            if problem is not None:
                raise ValueError(f"{name!r}: {problem}")
        return value

    reference: ReferenceSpec | None = Field(
        None, description="Reference data; without it a drift monitor's first window is its reference."
    )
    join: JoinSpec = Field(default_factory=JoinSpec, description="How labels meet their predictions.")
    monitors: dict[str, MonitorSpec] = Field(
        default_factory=dict, description="Monitors by name; the name is how conditions refer to them."
    )
    rules: list[Rule] = Field(
        default_factory=list, description="Rules, evaluated when a monitor they name emits a signal."
    )
    actions: dict[str, Action] = Field(
        default_factory=dict, description="Actions by name ('alert' exists without one)."
    )

    @model_validator(mode="after")
    def _selects(self) -> Policy:
        if (self.model is None) == (self.models is None):
            raise ValueError("give exactly one of 'model' (one model) or 'models' (names or globs of a fleet)")
        if self.models is not None and not self.selectors():
            raise ValueError("'models' names no model")
        return self

    def selectors(self) -> tuple[str, ...]:
        """The names and globs this policy selects models with (``model``, or ``models``)."""
        if self.model is not None:
            return (self.model,)
        return (self.models,) if isinstance(self.models, str) else tuple(self.models or ())

    def action_type(self, name: str) -> str:
        if name in BUILTIN_ACTIONS and name not in self.actions:
            return name
        spec = self.actions[name]
        return spec.type or name


def json_schema() -> dict[str, Any]:
    """The policy JSON Schema (draft 2020-12)."""
    schema = Policy.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "driftwarden policy"
    return schema
