"""The retrain lifecycle: train → evaluate → promote or reject → deploy; and rollback.

:func:`retrain` is a state machine whose progress goes out through ``record(state, info)``
(the caller persists it; ``info`` is plain JSON)::

    training ─▶ evaluating ─▶ rejected
                          └─▶ promoted ─▶ deploying ─▶ deployed
    (any step) ─▶ failed

- ``training``: the most recent ``spec.holdout`` of ``data`` (by ``__index``) is held out, the
  rest exported to ``workdir/train.parquet`` and trained on in a subprocess. A temporary
  failure (timeout, OOM kill, exit 75) is retried up to ``spec.retries`` more times after
  ``spec.backoff * 2**(attempt-1)`` seconds; a permanent one fails at once. ``training`` is
  recorded once per attempt (with the previous error and the wait on a retry). Rows without a
  label are dropped first.
- ``evaluating``: candidate and champion are scored on the held-out rows; ``promote_if``
  decides (with ``champion=None`` for a first model).
- ``promoted``: the candidate is registered (metadata: metrics, lineage, data fingerprint,
  ``previous_champion``). With a target, it is deployed first and the ``champion`` alias moves
  only once the deploy succeeded, so the alias always names what is served; without a target
  the alias moves at once and ``promoted`` is the final state.
- A failed or rejected run never touches the champion alias or the target. Every exception
  becomes a recorded ``failed`` outcome; nothing escapes.

:func:`rollback` redeploys the champion's ``previous_champion`` and moves the aliases back.

Running ``retrain`` again with the same ``workdir`` after it finished returns the stored
outcome (``workdir/outcome.json``) without training or deploying again.
"""

from __future__ import annotations

import json
import logging
import pickle
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from deploy.gate import PromoteIf, evaluate, holdout_split
from deploy.registry import CHAMPION, PREVIOUS, ModelVersion, Registry, atomic_write_text
from deploy.targets import Target
from deploy.training import (
    INDEX,
    LABEL,
    MODEL_FILE,
    RESERVED_COLUMNS,
    TRAIN_INFO_FILE,
    TrainResult,
    fingerprint,
    run_training,
)

log = logging.getLogger(__name__)

Record = Callable[[str, dict[str, Any]], None]

#: A training run that needs longer than this is a policy mistake more often than not.
DEFAULT_TRAIN_TIMEOUT = 1800.0
#: Base of the exponential retry delay for temporary training failures.
DEFAULT_BACKOFF = 30.0
#: No retry waits longer than this, whatever the attempt number.
MAX_BACKOFF = 3600.0
#: Alias set on the champion that a rollback replaced.
ROLLED_BACK = "rolled_back"
OUTCOME_FILE = "outcome.json"
TRAIN_DATA_FILE = "train.parquet"

TERMINAL_STATES = frozenset({"deployed", "promoted", "rejected", "failed", "rolled_back"})


@dataclass(frozen=True, kw_only=True)
class RetrainSpec:
    """How to retrain one model: the trainer (exactly one of ``entrypoint``/``command``, see
    :func:`deploy.training.run_training`), the gate's held-out fraction and metrics
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
    """How a retrain or rollback ended. ``state`` is one of :data:`TERMINAL_STATES`;
    ``version`` the registered (or rolled-back-to) version, if any."""

    state: str
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
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


class _Failed(Exception):
    """A step failed with a reason for the record (no traceback needed)."""


class _Run:
    """One retrain run: holds what each step produced and reports through ``record``."""

    def __init__(self, model: str, workdir: Path, record: Record) -> None:
        self.model, self.workdir, self._record = model, workdir, record
        self.state = "pending"
        self.version: str | None = None
        self.candidate: dict[str, float] | None = None
        self.champion: dict[str, float] | None = None
        self.attempts = 0

    def report(self, state: str, **info: Any) -> None:
        self.state = state
        info = {"model": self.model, **info}
        log.info("%s: %s %s", self.model, state, _brief(info))
        self._record(state, json.loads(json.dumps(info, default=str)))

    def finish(self, state: str, reason: str) -> Outcome:
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
            self.report(state, **info)
        except Exception:  # noqa: BLE001 - the outcome is still returned and stored
            log.exception("%s: recording state %r failed", self.model, state)
        try:
            atomic_write_text(self.workdir / OUTCOME_FILE, json.dumps(outcome.to_json(), indent=2))
        except Exception:  # noqa: BLE001
            log.exception("%s: cannot store %s", self.model, OUTCOME_FILE)
        return outcome


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
    ``__ts``) in ``workdir`` and promote/deploy the candidate if ``promote_if`` allows.

    ``lineage`` (e.g. policy, rule, window, idempotency key) is copied into the new version's
    metadata. See the module docstring for the states. Never raises.
    """
    workdir = Path(workdir)
    run = _Run(model, workdir, record)
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        stored = workdir / OUTCOME_FILE
        if stored.is_file():
            outcome = Outcome.from_json(json.loads(stored.read_text()))
            log.info(
                "%s: run in %s already ended as %s; not repeating it", model, workdir, outcome.state
            )
            return outcome
        return _retrain(spec, run, data, registry, target, promote_if, dict(lineage or {}), sleep)
    except _Failed as exc:
        return run.finish("failed", str(exc))
    except Exception as exc:  # noqa: BLE001 - nothing escapes: the outcome says what broke
        log.warning("%s: retrain failed while %s", model, run.state, exc_info=True)
        return run.finish("failed", f"{type(exc).__name__} while {run.state}: {exc}")


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
    for column in (LABEL, INDEX):
        if column not in data.columns:
            raise _Failed(f"training data has no {column!r} column")
    unlabeled = int(data[LABEL].isna().sum())
    if unlabeled:
        data = data[data[LABEL].notna()]
    train_df, held = holdout_split(data, spec.holdout)
    features = [c for c in data.columns if c not in RESERVED_COLUMNS]
    path = workdir / TRAIN_DATA_FILE
    train_df.to_parquet(path, index=False)
    data_info = {
        "rows": len(train_df),
        "holdout_rows": len(held),
        "fingerprint": fingerprint(path),
        "train_index": [int(train_df[INDEX].min()), int(train_df[INDEX].max())],
        "holdout_index": [int(held[INDEX].min()), int(held[INDEX].max())],
        "features": features,
        "unlabeled_dropped": unlabeled,
    }

    # -- training, with retries for temporary failures --------------------------------------
    attempts = 1 + spec.retries
    result: TrainResult | None = None
    retry: dict[str, Any] | None = None
    for attempt in range(1, attempts + 1):
        run.attempts = attempt
        run.report("training", attempt=attempt, of=attempts, data=data_info, retry=retry)
        result = run_training(
            path,
            workdir / f"attempt-{attempt}",
            entrypoint=spec.entrypoint,
            command=spec.command,
            params=spec.params,
            timeout=spec.timeout,
            reference=spec.reference,
            cwd=spec.cwd,
        )
        if result.ok:
            break
        kind = "temporary" if result.temporary else "permanent"
        if not result.temporary:
            raise _Failed(f"training failed ({kind}, not retried): {result.error}\n{_tail(result)}")
        if attempt == attempts:
            raise _Failed(
                f"training failed ({kind}); giving up after {attempts} tries: "
                f"{result.error}\n{_tail(result)}"
            )
        delay = spec.delay(attempt)
        log.warning(
            "%s: training attempt %d of %d failed (temporary): %s; retrying in %.1f s",
            model,
            attempt,
            attempts,
            result.error,
            delay,
        )
        sleep(delay)
        retry = {"previous_error": result.error, "waited": delay}
    assert result is not None and result.ok
    train_info = _read_json(result.output / TRAIN_INFO_FILE)

    # -- evaluating ---------------------------------------------------------------------------
    champion = registry.alias(model, CHAMPION)
    run.report(
        "evaluating",
        attempt=run.attempts,
        train=result.to_json(),
        champion_version=champion.version if champion else None,
    )
    with open(result.output / MODEL_FILE, "rb") as f:
        candidate_model = pickle.load(f)
    champion_model = registry.load(model, champion.version) if champion else None
    gate = evaluate(
        candidate_model,
        champion_model,
        held[features],
        held[LABEL],
        promote_if,
        spec.metrics,
        task=spec.task,  # type: ignore[arg-type]
    )
    run.candidate, run.champion = gate.candidate, gate.champion
    if not gate.promoted:
        return run.finish("rejected", gate.reason)

    # -- promoted: register; with a target, deploy before moving the alias -----------------
    metadata = {
        **lineage,
        "metrics": gate.candidate,
        "champion_metrics": gate.champion,
        "gate": gate.reason,
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
    version = registry.register(model, result.output, metadata)
    run.version = version.version
    if target is None:  # "promoted" is the final state: record it once, as the outcome
        _move_champion(registry, version, champion)
        return run.finish(
            "promoted",
            f"{gate.reason}; registered {version.version} as champion (no deploy target)",
        )
    run.report(
        "promoted",
        version=version.version,
        reason=gate.reason,
        candidate=gate.candidate,
        champion=gate.champion,
    )
    run.report("deploying", version=version.version, target=repr(target))
    served = target.deploy(version)
    _move_champion(registry, version, champion)
    return run.finish("deployed", f"{gate.reason}; {version.version} serving from {served}")


def _move_champion(registry: Registry, new: ModelVersion, old: ModelVersion | None) -> None:
    if old is not None:
        registry.set_alias(new.model, PREVIOUS, old.version)
    registry.set_alias(new.model, CHAMPION, new.version)


def rollback(
    model: str,
    registry: Registry,
    target: Target | None,
    record: Record,
    reason: str = "",
) -> Outcome:
    """Go back to the champion before the current one.

    Records ``rolling_back`` then ``rolled_back`` (or ``failed``). Redeploys the current
    champion's ``previous_champion`` (from its metadata) to ``target``, then moves the aliases:
    ``champion`` → previous, ``rolled_back`` → the replaced champion, ``previous`` → the
    previous one's own ``previous_champion`` (so rollbacks can walk further back). Never raises.
    """
    run = _Run(model, Path("."), record)
    try:
        current = registry.alias(model, CHAMPION)
        if current is None:
            raise _Failed(f"model {model!r} has no champion to roll back from")
        back_to = current.metadata.get("previous_champion")
        if not back_to:
            raise _Failed(f"champion {current.version} of {model!r} has no previous champion")
        previous = registry.get(model, str(back_to))
        run.version = previous.version
        run.report(
            "rolling_back", version=previous.version, replacing=current.version, reason=reason
        )
        if target is not None:
            target.deploy(previous)
        registry.set_alias(model, ROLLED_BACK, current.version)
        registry.set_alias(model, CHAMPION, previous.version)
        registry.set_alias(model, PREVIOUS, previous.metadata.get("previous_champion") or None)
        msg = f"rolled back from {current.version} to {previous.version}"
        return _finish_rollback(run, "rolled_back", msg + (f": {reason}" if reason else ""))
    except _Failed as exc:
        return _finish_rollback(run, "failed", str(exc))
    except Exception as exc:  # noqa: BLE001 - nothing escapes
        log.warning("%s: rollback failed", model, exc_info=True)
        return _finish_rollback(run, "failed", f"{type(exc).__name__} during rollback: {exc}")


def _finish_rollback(run: _Run, state: str, reason: str) -> Outcome:
    outcome = Outcome(state=state, model=run.model, version=run.version, reason=reason)
    try:
        run.report(state, version=run.version, reason=reason)
    except Exception:  # noqa: BLE001
        log.exception("%s: recording state %r failed", run.model, state)
    return outcome


def _tail(result: TrainResult, lines: int = 20) -> str:
    return "\n".join(result.log.splitlines()[-lines:])


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


def _brief(info: Mapping[str, Any]) -> str:
    keys = ("version", "attempt", "reason")
    return " ".join(f"{k}={info[k]}" for k in keys if info.get(k) is not None)[:200]
