"""The retrain lifecycle: train → evaluate → promote or reject → deploy → verify; and rollback.

Each phase is a function whose progress goes out through ``record(state, info)`` (the caller
persists it; ``info`` is plain JSON) and which ends in an :class:`Outcome`::

    retrain:  training ─▶ evaluating ─▶ rejected
                                    └─▶ promoted ─▶ deploying ─▶ deployed
              training ─▶ shadowing                      (spec.shadow: the gate waits, see judge)
    judge:    evaluating ─▶ rejected | promoted ─▶ deploying ─▶ deployed   (on live rows)
    verify:   verified | rolling_back ─▶ rolled_back                       (on live rows)
    deploy_version:  deploying ─▶ deployed                 (finishing a deploy after a crash)
    rollback: rolling_back ─▶ rolled_back
    (any step) ─▶ failed

- ``training``: the most recent ``spec.holdout`` of ``data`` (by ``__index``) is held out, the
  rest (features and the reserved columns; never ``__attr_*`` attributes) exported to
  ``workdir/train.parquet`` and trained on in a subprocess. A temporary failure (timeout, OOM
  kill, exit 75) is retried up to ``spec.retries`` more times after
  ``spec.backoff * 2**(attempt-1)`` seconds; a permanent one fails at once. ``training`` is
  recorded once per attempt (with the previous error and the wait on a retry). Rows without a
  label are dropped first.
- ``evaluating``: candidate and champion are scored on the held-out rows; ``promote_if``
  decides (with ``champion=None`` for a first model), and the optional significance and
  fairness checks of the spec must pass too (:mod:`driftwarden.deploy.gate`).
- ``promoted``: the candidate is registered (metadata: metrics, lineage, data fingerprint,
  ``previous_champion``). With a target, it is deployed first and the ``champion`` alias moves
  only once the deploy succeeded, so the alias always names what is served; without a target
  the alias moves at once and ``promoted`` is the final state. The champion moves by
  compare-and-swap (``Registry.move_champion``) against the version the gate compared with,
  and ``previous`` names that version: a candidate whose gate saw a champion that has been
  replaced since is ``rejected`` as stale (``info.stale``), never promoted over a newer one.
- ``shadowing`` (``spec.shadow``): the candidate is registered as ``challenger`` and not served;
  :func:`judge` later scores it and the champion on live labeled rows that arrived after it
  was trained (so never trained on) and decides there, like the held-out gate.
- :func:`verify` scores the deployed model on live labeled rows after the deploy and rolls
  back to the version it replaced when ``rollback_if(live, champion, candidate)`` holds.
- A failed or rejected run never touches the champion alias or the target. Every exception
  becomes a recorded ``failed`` outcome; nothing escapes.

Running a phase again with the same ``workdir`` after it finished returns the stored outcome
(``workdir/outcome.json``, ``judge.json``, ``verify.json``) without training or deploying again.
A retrain run again in the ``workdir`` of one that died mid-way (its daemon was killed) resumes
it: the data is exported again and must be byte-identical (else the old trainings are void and
it trains anew), each attempt's trainer is adopted
(:func:`~driftwarden.deploy.training.resume_training`: a finished one is judged by its exit
record, a running one waited for) and launched again only when it vanished without one, and a
candidate already registered for the decision is not registered twice.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from driftwarden.deploy.files import atomic_write_text
from driftwarden.deploy.gate import (
    Fairness,
    GateResult,
    Metrics,
    PromoteIf,
    Significance,
    evaluate,
    holdout_split,
    score,
)
from driftwarden.deploy.registry import (
    CHALLENGER,
    CHAMPION,
    PREVIOUS,
    ModelVersion,
    Registry,
)
from driftwarden.deploy.states import ActionState
from driftwarden.deploy.targets import Target
from driftwarden.deploy.training import (
    INDEX,
    LABEL,
    MODEL_FILE,
    RESERVED_COLUMNS,
    TRAIN_INFO_FILE,
    Trainer,
    TrainResult,
    fingerprint,
    reap_trainer,
    resume_training,
    run_training,
)

if TYPE_CHECKING:  # pandas (40 MB) loads with the first retrain, not with the daemon
    import pandas as pd

log = logging.getLogger(__name__)

Record = Callable[[ActionState, dict[str, Any]], None]
RollbackIf = Callable[[Metrics, Metrics | None, Metrics | None], bool]
"""``rollback_if(live, champion, candidate)``: live = the deployed model on the verify window,
champion = the version it replaced on the same rows, candidate = the deployed model's gate
metrics."""

#: A training run that needs longer than this is a policy mistake more often than not.
DEFAULT_TRAIN_TIMEOUT = 1800.0
#: Base of the exponential retry delay for temporary training failures.
DEFAULT_BACKOFF = 30.0
#: No retry waits longer than this, whatever the attempt number.
MAX_BACKOFF = 3600.0
#: Alias set on the champion that a rollback replaced.
ROLLED_BACK = "rolled_back"
OUTCOME_FILE = "outcome.json"
JUDGE_FILE = "judge.json"
VERIFY_FILE = "verify.json"
TRAIN_DATA_FILE = "train.parquet"
#: Prefix of attribute columns (sensitive attributes, segments): never training inputs.
ATTRIBUTE_PREFIX = "__attr_"


@dataclass(frozen=True, kw_only=True)
class RetrainSpec:
    """How to retrain one model: the trainer (exactly one of ``entrypoint``/``command``, see
    :func:`driftwarden.deploy.training.run_training`), the gate's held-out fraction and metrics
    (``None``: all of the task's), and the retry policy for temporary failures.
    """

    entrypoint: str | None = None
    command: str | Sequence[str] | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    timeout: float = DEFAULT_TRAIN_TIMEOUT
    holdout: float = 0.2
    metrics: tuple[str, ...] | None = None
    task: str | None = None
    retries: int = 2
    backoff: float = DEFAULT_BACKOFF
    reference: Path | None = None
    cwd: Path | None = None
    significance: Significance | None = None
    fairness: Fairness | None = None
    shadow: bool = False

    def __post_init__(self) -> None:
        if (self.entrypoint is None) == (self.command is None):
            raise ValueError("RetrainSpec: give exactly one of entrypoint= or command=")
        if not self.timeout > 0:
            raise ValueError(f"RetrainSpec.timeout must be > 0 seconds, got {self.timeout!r}")
        if not 0 < self.holdout < 1:
            raise ValueError(f"RetrainSpec.holdout must be in (0, 1), got {self.holdout!r}")
        if self.retries < 0:
            raise ValueError(f"RetrainSpec.retries must be >= 0, got {self.retries!r}")
        if self.backoff < 0:
            raise ValueError(f"RetrainSpec.backoff must be >= 0 seconds, got {self.backoff!r}")

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based).

        >>> [RetrainSpec(entrypoint="m:f", backoff=2).delay(a) for a in (1, 2, 3)]
        [2.0, 4.0, 8.0]
        """
        return float(min(MAX_BACKOFF, self.backoff * 2 ** (attempt - 1)))


@dataclass(frozen=True)
class Outcome:
    """How a retrain or rollback ended. ``state`` is one of
    :data:`~driftwarden.deploy.states.OUTCOME_STATES`; ``version`` the registered (or
    rolled-back-to) version, if any."""

    state: ActionState
    model: str
    version: str | None = None
    candidate: dict[str, float] | None = None
    champion: dict[str, float] | None = None
    reason: str = ""
    attempts: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Outcome:
        fields = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**{**fields, "state": ActionState(data["state"])})


class _Failed(Exception):
    """A step failed with a reason for the record (no traceback needed)."""


class _Run:
    """One phase of a run: holds what each step produced and reports through ``record``."""

    def __init__(self, model: str, workdir: Path | None, record: Record, outcome_file: str = OUTCOME_FILE) -> None:
        self.model, self.workdir, self._record = model, workdir, record
        self.outcome_file = outcome_file
        self.state: ActionState = ActionState.PENDING
        self.version: str | None = None
        self.candidate: dict[str, float] | None = None
        self.champion: dict[str, float] | None = None
        self.attempts = 0

    def report(self, state: ActionState, **info: Any) -> None:
        self.state = state
        info = {"model": self.model, **info}
        log.info("%s: %s %s", self.model, state, _brief(info))
        self._record(state, json.loads(json.dumps(info, default=str)))

    def stored(self) -> Outcome | None:
        """The outcome of this phase if it already ended in ``workdir``."""
        if self.workdir is None:
            return None
        self.workdir.mkdir(parents=True, exist_ok=True)
        path = self.workdir / self.outcome_file
        if not path.is_file():
            return None
        outcome = Outcome.from_json(json.loads(path.read_text()))
        log.info("%s: %s already ended as %s; not repeating it", self.model, path, outcome.state)
        return outcome

    def finish(self, state: ActionState, reason: str, **extra: Any) -> Outcome:
        outcome = Outcome(
            state=state,
            model=self.model,
            version=self.version,
            candidate=self.candidate,
            champion=self.champion,
            reason=reason,
            attempts=self.attempts,
        )
        info = outcome.to_json()
        info.pop("model")
        info.pop("state")
        try:
            self.report(state, **info, **extra)
        except Exception:  # noqa: BLE001 - the outcome is still returned and stored
            log.exception("%s: recording state %r failed", self.model, state)
        if self.workdir is not None:
            try:
                atomic_write_text(self.workdir / self.outcome_file, json.dumps(outcome.to_json(), indent=2))
            except Exception:  # noqa: BLE001
                log.exception("%s: cannot store %s", self.model, self.outcome_file)
        return outcome

    def guarded(self, step: Callable[[], Outcome]) -> Outcome:
        """Run ``step``; a failure of any kind becomes the recorded ``failed`` outcome."""
        try:
            return step()
        except _Failed as exc:
            return self.finish(ActionState.FAILED, str(exc))
        except Exception as exc:  # noqa: BLE001 - nothing escapes: the outcome says what broke
            log.warning("%s: failed while %s", self.model, self.state, exc_info=True)
            return self.finish(ActionState.FAILED, f"{type(exc).__name__} while {self.state}: {exc}")


def retrain(
    spec: RetrainSpec,
    model: str,
    data: pd.DataFrame,
    workdir: Path,
    registry: Registry,
    target: Target | None,
    promote_if: PromoteIf,
    record: Record,
    lineage: Mapping[str, Any] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Outcome:
    """Retrain ``model`` on ``data`` (features + ``__label``, ``__index``; optional ``__id``,
    ``__ts``, ``__attr_*``) in ``workdir`` and promote/deploy the candidate if the gate allows
    (with ``spec.shadow``: register it as challenger and end ``shadowing``).

    ``lineage`` (e.g. policy, rule, window, idempotency key) is copied into the new version's
    metadata. See the module docstring for the states. Never raises.
    """
    run = _Run(model, Path(workdir), record)

    def step() -> Outcome:
        stored = run.stored()
        if stored is not None:
            return stored
        return _retrain(spec, run, data, registry, target, promote_if, dict(lineage or {}), sleep)

    return run.guarded(step)


def _retrain(
    spec: RetrainSpec,
    run: _Run,
    data: pd.DataFrame,
    registry: Registry,
    target: Target | None,
    promote_if: PromoteIf,
    lineage: dict[str, Any],
    sleep: Callable[[float], None],
) -> Outcome:
    model, workdir = run.model, run.workdir
    assert workdir is not None
    prepared = _export(data, spec.holdout, workdir / TRAIN_DATA_FILE)
    result = _train(spec, run, prepared, workdir, sleep)
    champion, gate = _evaluate(spec, run, registry, result, prepared, promote_if)
    metadata = _version_metadata(
        spec, lineage, gate, champion, prepared.info, _read_json(result.output / TRAIN_INFO_FILE)
    )
    if spec.shadow:  # the held-out numbers are for the record; the live ones decide (judge)
        version = _register_once(registry, model, result.output, {**metadata, "shadow": True})
        registry.set_alias(model, CHALLENGER, version.version)
        run.version = version.version
        return run.finish(
            ActionState.SHADOWING,
            f"{version.version} registered as {CHALLENGER}; scoring it on live traffic "
            f"before the gate decides (held-out: {gate.reason})",
            checks=gate.checks,
        )
    if not gate.promoted:
        return run.finish(ActionState.REJECTED, gate.reason, checks=gate.checks)
    compared = champion.version if champion else None
    if registry.aliases(model).get(CHAMPION) != compared:  # replaced while we evaluated
        return _stale(run, registry, compared)

    # -- promoted: register; with a target, deploy before moving the alias -----------------
    version = _register_once(registry, model, result.output, metadata)
    run.version = version.version
    return _promote(run, registry, target, version, champion, gate)


def _register_once(registry: Registry, model: str, output: Path, metadata: dict[str, Any]) -> ModelVersion:
    """Register a candidate, or find the version an earlier life of this run registered before it
    died (same decision, run folder and data): a resumed retrain never registers its candidate
    twice."""
    metadata = {**metadata, "run": str(output.parent)}
    decision, data = metadata.get("decision"), metadata.get("data", {}).get("fingerprint")
    if decision is not None:
        for existing in reversed(registry.versions(model)):
            meta = existing.metadata
            same_run = meta.get("run") == metadata["run"] and meta.get("decision") == decision
            if same_run and meta.get("data", {}).get("fingerprint") == data:
                log.info(
                    "%s: %s was registered for %s before a restart; not registering again",
                    model,
                    existing.version,
                    decision,
                )
                return existing
    return registry.register(model, output, metadata)


@dataclass(frozen=True)
class _Prepared:
    """A retrain's data: the exported training rows, the held-out rows, the features."""

    path: Path
    held: pd.DataFrame
    features: list[str]
    info: dict[str, Any]
    """For the record and the new version's lineage: sizes, fingerprint, index spans."""


def _export(data: pd.DataFrame, holdout: float, path: Path) -> _Prepared:
    """Drop unlabeled rows, hold out the most recent ``holdout`` share and export the rest
    (features and reserved columns) to ``path`` for the trainer."""
    for column in (LABEL, INDEX):
        if column not in data.columns:
            raise _Failed(f"training data has no {column!r} column")
    unlabeled = int(data[LABEL].isna().sum())
    if unlabeled:
        data = data[data[LABEL].notna()]
    train_df, held = holdout_split(data, holdout)
    features = feature_columns(data)
    fresh = path.with_name(path.name + ".new")
    train_df[features + [c for c in RESERVED_COLUMNS if c in train_df.columns]].to_parquet(fresh, index=False)
    digest = fingerprint(fresh)
    if path.is_file() and fingerprint(path) == digest:  # a resumed run: a trainer may be reading it
        fresh.unlink()
    else:
        if path.is_file():  # the rows changed since an earlier life exported them: its trainings are void
            log.warning("%s: the training data changed since %s was exported; training again", path.parent, path)
            abandon(path.parent)
            for attempt in path.parent.glob("attempt-*"):
                shutil.rmtree(attempt, ignore_errors=True)
        os.replace(fresh, path)
    info = {
        "rows": len(train_df),
        "holdout_rows": len(held),
        "fingerprint": digest,
        "train_index": [int(train_df[INDEX].min()), int(train_df[INDEX].max())],
        "holdout_index": [int(held[INDEX].min()), int(held[INDEX].max())],
        "features": features,
        "unlabeled_dropped": unlabeled,
    }
    return _Prepared(path, held, features, info)


def _train(
    spec: RetrainSpec, run: _Run, prepared: _Prepared, workdir: Path, sleep: Callable[[float], None]
) -> TrainResult:
    """Train, retrying temporary failures ``spec.retries`` times with a growing delay; a
    permanent failure, or the last temporary one, fails the run."""
    attempts = 1 + spec.retries
    retry: dict[str, Any] | None = None
    for attempt in range(1, attempts + 1):
        run.attempts = attempt
        output = workdir / f"attempt-{attempt}"
        # A restarted run finds the trainer an earlier life of it launched: ended, or still running.
        result = resume_training(prepared.path, output, command=spec.command is not None) if output.is_dir() else None
        if result is None:
            result = _launch(spec, run, prepared, output, attempt, attempts, retry)
        if result.ok:
            return result
        kind = "temporary" if result.temporary else "permanent"
        if not result.temporary:
            raise _Failed(f"training failed ({kind}, not retried): {result.error}\n{_tail(result)}")
        if attempt == attempts:
            raise _Failed(
                f"training failed ({kind}); giving up after {attempts} tries: {result.error}\n{_tail(result)}"
            )
        delay = spec.delay(attempt)
        log.warning(
            "%s: training attempt %d of %d failed (temporary): %s; retrying in %.1f s",
            run.model,
            attempt,
            attempts,
            result.error,
            delay,
        )
        if not (workdir / f"attempt-{attempt + 1}").is_dir():  # else an earlier life waited already
            sleep(delay)
        retry = {"previous_error": result.error, "waited": delay}
    raise AssertionError("unreachable: the last attempt returns or raises")


def _launch(
    spec: RetrainSpec,
    run: _Run,
    prepared: _Prepared,
    output: Path,
    attempt: int,
    attempts: int,
    retry: dict[str, Any] | None,
) -> TrainResult:
    """Run attempt ``attempt``; ``training`` is recorded once, with the trainer's pid and start
    time as soon as it runs (what a restart adopts), or without them if it could not start."""
    info: dict[str, Any] = {"attempt": attempt, "of": attempts, "data": prepared.info, "retry": retry}
    reported: list[Trainer] = []

    def started(trainer: Trainer) -> None:
        reported.append(trainer)
        run.report(ActionState.TRAINING, **info, trainer=trainer.to_json())

    result = run_training(
        prepared.path,
        output,
        entrypoint=spec.entrypoint,
        command=spec.command,
        params=spec.params,
        timeout=spec.timeout,
        reference=spec.reference,
        cwd=spec.cwd,
        on_start=started,
    )
    if not reported:
        run.report(ActionState.TRAINING, **info)
    return result


def _evaluate(
    spec: RetrainSpec,
    run: _Run,
    registry: Registry,
    result: TrainResult,
    prepared: _Prepared,
    promote_if: PromoteIf,
) -> tuple[ModelVersion | None, GateResult]:
    """Score the trained candidate and the champion on the held-out rows; (champion, gate)."""
    champion = registry.alias(run.model, CHAMPION)
    run.report(
        ActionState.EVALUATING,
        attempt=run.attempts,
        train=result.to_json(),
        champion_version=champion.version if champion else None,
        on="holdout",
    )
    with open(result.output / MODEL_FILE, "rb") as f:
        candidate_model = pickle.load(f)
    champion_model = registry.load(run.model, champion.version) if champion else None
    gate = _gate(spec, candidate_model, champion_model, prepared.held, prepared.features, promote_if)
    run.candidate, run.champion = gate.candidate, gate.champion
    return champion, gate


def _version_metadata(
    spec: RetrainSpec,
    lineage: Mapping[str, Any],
    gate: GateResult,
    champion: ModelVersion | None,
    data_info: dict[str, Any],
    train_info: dict[str, Any],
) -> dict[str, Any]:
    """What a registered candidate carries: lineage, the gate's numbers, data and trainer."""
    return {
        **lineage,
        "metrics": gate.candidate,
        "champion_metrics": gate.champion,
        "gate": gate.reason,
        "checks": gate.checks,
        "previous_champion": champion.version if champion else None,
        "parent": champion.version if champion else None,
        "data": data_info,
        "train": train_info,
        "trainer": {
            "entrypoint": spec.entrypoint,
            "command": spec.command,
            "params": dict(spec.params),
        },
    }


def _gate(
    spec: RetrainSpec,
    candidate: Any,
    champion: Any,
    rows: pd.DataFrame,
    features: list[str],
    promote_if: PromoteIf,
) -> GateResult:
    groups = None
    if spec.fairness is not None:
        attr = spec.fairness.attribute
        column = attr if attr in rows.columns else ATTRIBUTE_PREFIX + attr
        if column not in rows.columns:
            raise _Failed(f"fairness attribute {attr!r} is neither a feature nor an attribute")
        groups = rows[column].astype(str).to_numpy()
    return evaluate(
        candidate,
        champion,
        rows[features],
        rows[LABEL],
        promote_if,
        spec.metrics,
        task=spec.task,  # type: ignore[arg-type]
        significance=spec.significance,
        fairness=spec.fairness,
        groups=groups,
    )


def _promote(
    run: _Run,
    registry: Registry,
    target: Target | None,
    version: ModelVersion,
    champion: ModelVersion | None,
    gate: GateResult,
) -> Outcome:
    """Promote ``version``, which the gate compared with ``champion``: the champion moves by
    compare-and-swap against that version, so a candidate whose gate saw an older champion
    is rejected (stale) instead of replacing a newer one."""
    model = run.model
    expected = champion.version if champion else None
    if target is None:  # "promoted" is the final state: record it once, as the outcome
        if not registry.move_champion(model, version.version, expected):
            return _stale(run, registry, expected)
        return run.finish(
            ActionState.PROMOTED,
            f"{gate.reason}; registered {version.version} as champion (no deploy target)",
            checks=gate.checks,
        )
    run.report(
        ActionState.PROMOTED,
        version=version.version,
        reason=gate.reason,
        candidate=gate.candidate,
        champion=gate.champion,
        checks=gate.checks,
    )
    return _deploy(run, registry, target, version, expected, f"{gate.reason}; ")


def _deploy(
    run: _Run, registry: Registry, target: Target, version: ModelVersion, expected: str | None, why: str, **extra: Any
) -> Outcome:
    """Deploy ``version`` and move the champion from ``expected`` to it (compare-and-swap);
    when the champion moved meanwhile, the newer champion is served again and the candidate
    is rejected as stale."""
    model = run.model
    if registry.aliases(model).get(CHAMPION) not in (expected, version.version):
        return _stale(run, registry, expected)
    run.report(ActionState.DEPLOYING, version=version.version, target=repr(target), previous=expected, **extra)
    served = target.deploy(version)
    if not registry.move_champion(model, version.version, expected):
        current = registry.alias(model, CHAMPION)
        if current is not None:  # it was replaced while we deployed: serve the champion again
            target.deploy(current)
        return _stale(run, registry, expected)
    log.info("%s: %s serving from %s", model, version.version, served)
    return run.finish(ActionState.DEPLOYED, f"{why}{version.version} serving from {served}", previous=expected)


def _stale(run: _Run, registry: Registry, expected: str | None) -> Outcome:
    """The candidate's gate compared it with ``expected``, which is no longer the champion."""
    current = registry.aliases(run.model).get(CHAMPION)
    compared = expected or "no champion"
    return run.finish(
        ActionState.REJECTED,
        f"stale candidate: its gate compared it with {compared}, but the champion is now {current}; not promoted",
        stale=True,
        compared_with=expected,
        champion_now=current,
    )


def feature_columns(data: pd.DataFrame) -> list[str]:
    """The model inputs of a data window: every column not reserved (``__…``)."""
    return [str(c) for c in data.columns if not str(c).startswith("__")]


def judge(
    spec: RetrainSpec,
    model: str,
    version: str,
    live: pd.DataFrame,
    workdir: Path,
    registry: Registry,
    target: Target | None,
    promote_if: PromoteIf,
    record: Record,
) -> Outcome:
    """Decide on a shadowed challenger: score it and the champion on ``live`` (labeled rows
    that arrived after it was trained), apply the gate, then promote and deploy it or reject
    it (the challenger alias is cleared). Never raises; a second call returns the stored
    outcome."""
    run = _Run(model, Path(workdir), record, JUDGE_FILE)

    def step() -> Outcome:
        stored = run.stored()
        if stored is not None:
            return stored
        run.version = version
        candidate = registry.get(model, version)
        champion = registry.alias(model, CHAMPION)
        rows = live[live[LABEL].notna()]
        if rows.empty:
            raise _Failed("no labeled live rows to judge the challenger on")
        run.report(
            ActionState.EVALUATING,
            version=version,
            champion_version=champion.version if champion else None,
            on="live",
            rows=len(rows),
            live_index=[int(rows[INDEX].min()), int(rows[INDEX].max())],
        )
        features = list(candidate.metadata.get("data", {}).get("features") or feature_columns(rows))
        champion_model = registry.load(model, champion.version) if champion else None
        gate = _gate(spec, registry.load(model, version), champion_model, rows, features, promote_if)
        run.candidate, run.champion = gate.candidate, gate.champion
        if not gate.promoted:
            if registry.aliases(model).get(CHALLENGER) == version:
                registry.set_alias(model, CHALLENGER, None)
            return run.finish(ActionState.REJECTED, f"on live traffic: {gate.reason}", checks=gate.checks)
        return _promote(run, registry, target, candidate, champion, gate)

    return run.guarded(step)


def deploy_version(
    model: str,
    version: str,
    previous: str | None,
    registry: Registry,
    target: Target,
    record: Record,
) -> Outcome:
    """Finish a deploy that was interrupted (the daemon died while ``promoted`` or
    ``deploying``): deploy ``version`` (a target deploy is idempotent) and move the champion
    from ``previous`` (the version its gate compared with) to it, by compare-and-swap (a
    stale candidate ends ``rejected``). Never raises."""
    run = _Run(model, None, record)
    run.version = version

    def step() -> Outcome:
        new = registry.get(model, version)
        return _deploy(run, registry, target, new, previous, "resumed after a restart; ", resumed=True)

    return run.guarded(step)


def verify(
    model: str,
    version: str,
    previous: str | None,
    live: pd.DataFrame,
    rollback_if: RollbackIf,
    registry: Registry,
    target: Target | None,
    record: Record,
    *,
    metrics: Sequence[str] | None = None,
    task: str | None = None,
    workdir: Path | None = None,
) -> Outcome:
    """Post-deploy verification: score the deployed ``version`` and the ``previous`` champion
    on ``live`` (labeled rows after the deploy) and roll back to ``previous`` when
    ``rollback_if(live, champion, candidate)`` holds (see :data:`RollbackIf`); otherwise end
    ``verified``. Nothing is rolled back when ``version`` is no longer the champion (a later
    deploy superseded it) or when there is no previous version. Never raises."""
    run = _Run(model, workdir, record, VERIFY_FILE)
    run.version = version

    def step() -> Outcome:
        stored = run.stored()
        if stored is not None:
            return stored
        deployed = registry.get(model, version)
        rows = live[live[LABEL].notna()]
        if rows.empty:
            raise _Failed("no labeled live rows to verify the deploy on")
        features = list(deployed.metadata.get("data", {}).get("features") or feature_columns(rows))
        X, y = rows[features], rows[LABEL]
        wanted = None if metrics is None else tuple(metrics)
        live_metrics = score(registry.load(model, version), X, y, wanted, task=task)  # type: ignore[arg-type]
        champ_metrics = (
            score(registry.load(model, previous), X, y, wanted, task=task)  # type: ignore[arg-type]
            if previous
            else None
        )
        gate_metrics = deployed.metadata.get("metrics")
        run.candidate, run.champion = live_metrics, champ_metrics
        span = [int(rows[INDEX].min()), int(rows[INDEX].max())]
        current = registry.aliases(model).get(CHAMPION)
        if current != version:
            return run.finish(
                ActionState.VERIFIED,
                f"superseded by {current}; nothing to roll back",
                live=live_metrics,
                rows=len(rows),
                live_index=span,
            )
        if previous is None:
            return run.finish(
                ActionState.VERIFIED,
                "first deploy: no previous version to roll back to",
                live=live_metrics,
                rows=len(rows),
                live_index=span,
            )
        if not rollback_if(live_metrics, champ_metrics, gate_metrics):
            return run.finish(
                ActionState.VERIFIED,
                f"rollback_if does not hold on {len(rows)} live rows",
                live=live_metrics,
                rows=len(rows),
                live_index=span,
            )
        reason = (
            f"rollback_if holds on {len(rows)} live rows (live {_fmt(live_metrics)}; {previous} {_fmt(champ_metrics)})"
        )
        back = rollback(model, registry, target, record, reason, to=previous, replacing=version)
        if back.state != ActionState.ROLLED_BACK:
            raise _Failed(f"rollback after failed verification failed: {back.reason}")
        outcome = Outcome(
            state=ActionState.ROLLED_BACK,
            model=model,
            version=previous,
            candidate=live_metrics,
            champion=champ_metrics,
            reason=back.reason,
        )
        if workdir is not None:
            atomic_write_text(workdir / VERIFY_FILE, json.dumps(outcome.to_json(), indent=2))
        return outcome

    return run.guarded(step)


def rollback(
    model: str,
    registry: Registry,
    target: Target | None,
    record: Record,
    reason: str = "",
    *,
    to: str | None = None,
    replacing: str | None = None,
) -> Outcome:
    """Go back to the champion before the current one.

    Records ``rolling_back`` then ``rolled_back`` (or ``failed``). Redeploys ``to`` (default:
    the ``previous`` alias, else the champion's ``previous_champion``) to ``target``, then
    moves the aliases: ``champion`` → it, ``rolled_back`` → the replaced champion, ``previous``
    → its own ``previous_champion`` (so rollbacks can walk further back). With ``to`` and
    ``replacing`` given it is idempotent: a rollback interrupted by a crash can be repeated.
    Never raises.
    """
    run = _Run(model, None, record)
    try:
        if replacing is None:
            current = registry.alias(model, CHAMPION)
            if current is None:
                raise _Failed(f"model {model!r} has no champion to roll back from")
        else:
            current = registry.get(model, replacing)
        back_to = to or registry.aliases(model).get(PREVIOUS) or current.metadata.get("previous_champion")
        if not back_to or back_to == current.version:
            raise _Failed(f"champion {current.version} of {model!r} has no previous champion")
        previous = registry.get(model, str(back_to))
        run.version = previous.version
        run.report(ActionState.ROLLING_BACK, version=previous.version, replacing=current.version, reason=reason)
        if target is not None:
            target.deploy(previous)
        registry.set_alias(model, ROLLED_BACK, current.version)
        registry.set_alias(model, CHAMPION, previous.version)
        registry.set_alias(model, PREVIOUS, previous.metadata.get("previous_champion") or None)
        msg = f"rolled back from {current.version} to {previous.version}"
        return _finish_rollback(run, ActionState.ROLLED_BACK, msg + (f": {reason}" if reason else ""))
    except _Failed as exc:
        return _finish_rollback(run, ActionState.FAILED, str(exc))
    except Exception as exc:  # noqa: BLE001 - nothing escapes
        log.warning("%s: rollback failed", model, exc_info=True)
        return _finish_rollback(run, ActionState.FAILED, f"{type(exc).__name__} during rollback: {exc}")


def _finish_rollback(run: _Run, state: ActionState, reason: str) -> Outcome:
    outcome = Outcome(state=state, model=run.model, version=run.version, reason=reason)
    try:
        run.report(state, version=run.version, reason=reason)
    except Exception:  # noqa: BLE001
        log.exception("%s: recording state %r failed", run.model, state)
    return outcome


def abandon(workdir: Path) -> list[int]:
    """After a crash during training: kill the trainers the dead run left behind in
    ``workdir`` (see :func:`driftwarden.deploy.training.reap_trainer`); returns their pids."""
    workdir = Path(workdir)
    if not workdir.is_dir():
        return []
    killed = [reap_trainer(p) for p in sorted(workdir.glob("attempt-*")) if p.is_dir()]
    return [pid for pid in killed if pid is not None]


def _tail(result: TrainResult, lines: int = 20) -> str:
    return "\n".join(result.log.splitlines()[-lines:])


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


def _fmt(metrics: Mapping[str, float] | None) -> str:
    if not metrics:
        return "-"
    return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())


def _brief(info: Mapping[str, Any]) -> str:
    keys = ("version", "attempt", "reason")
    return " ".join(f"{k}={info[k]}" for k in keys if info.get(k) is not None)[:200]
