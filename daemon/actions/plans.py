"""An action of a policy translated into the objects of the deploy lifecycle.

:mod:`driftwarden.deploy` knows nothing of policies; this module is the one place that knows
both. An :class:`ActionPlan` gives, for one action of one policy, the trainer and gate settings
(:class:`~driftwarden.deploy.lifecycle.RetrainSpec`), the deploy target, the compiled
``promote_if`` and ``rollback_if`` conditions as the callables the lifecycle calls, and the
live windows of ``shadow`` and ``verify``. Relative paths (the serving directory, the trainer's
working directory) are relative to ``base``, the daemon's state directory.

>>> from pathlib import Path
>>> from driftwarden.policies.loader import load_text
>>> policy, errors = load_text(Path("p.yaml"), '''
... version: 1
... model: m
... monitors: {perf: {kind: performance, metric: accuracy, window: {events: 100}, threshold: 0.9}}
... rules: [{name: low, when: perf.drift, do: retrain}]
... actions:
...   retrain:
...     train: {entrypoint: "pkg.mod:fit", timeout: 5m}
...     deploy: {target: local, path: serving/m}
...     rollback_if: "live.accuracy < champion.accuracy"
... ''')
>>> plan = ActionPlan(policy, "retrain", Path("/state"))
>>> plan.retrain_spec().timeout, plan.target(), plan.verify_window, plan.shadow_window
(300.0, LocalTarget(path='/state/serving/m', keep=3), 500, None)
>>> plan.promote_if()({"accuracy": 0.9}, None), plan.promote_if()({"accuracy": 0.9}, {"accuracy": 0.95})
(True, False)
>>> plan.rollback_if()({"accuracy": 0.8}, {"accuracy": 0.9}, None)
True
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from driftwarden.deploy.gate import Fairness, PromoteIf, Significance
from driftwarden.deploy.lifecycle import RetrainSpec, RollbackIf
from driftwarden.deploy.targets import HttpTarget, LocalTarget, Target
from driftwarden.policies.durations import parse_duration
from driftwarden.policies.loader import LoadedPolicy
from driftwarden.policies.schema import Action

DEFAULT_VERIFY_WINDOW = 500
"""Labeled events checked after a deploy when a policy has ``rollback_if`` but no ``verify``:
enough for accuracy to within about ±0.04 (95 %)."""


@dataclass(frozen=True)
class ActionPlan:
    """Action ``name`` of ``policy``, as the deploy lifecycle takes it."""

    policy: LoadedPolicy
    name: str
    base: Path
    """The daemon's state directory: relative deploy paths and the trainer's working directory."""

    @property
    def spec(self) -> Action:
        return self.policy.spec.actions[self.name]

    @property
    def data_last(self) -> int:
        """How many of the most recent labeled events a retrain trains on."""
        return self.spec.data.last

    @property
    def has_target(self) -> bool:
        """A deploy follows ``promoted``."""
        return self.spec.deploy is not None

    @property
    def verify_window(self) -> int | None:
        """Live labeled events checked after a deploy; ``None`` when the policy does not verify."""
        if self.name not in self.policy.rollback_if:
            return None
        return self.spec.verify.window if self.spec.verify is not None else DEFAULT_VERIFY_WINDOW

    @property
    def shadow_window(self) -> int | None:
        """Live labeled events a shadowed candidate is judged on; ``None`` without ``shadow``."""
        return self.spec.shadow.window if self.spec.shadow is not None else None

    def resolve(self, path: str | Path) -> Path:
        """A deploy path: relative paths are relative to :attr:`base`."""
        p = Path(path)
        return p if p.is_absolute() else self.base / p

    def retrain_spec(self) -> RetrainSpec:
        spec = self.spec
        if spec.train is None:
            raise ValueError(f"action {self.name!r} of {self.policy.model!r} has no 'train'")
        sig, fair = spec.significance, spec.fairness
        return RetrainSpec(
            entrypoint=spec.train.entrypoint,
            command=spec.train.command,
            params=spec.train.params,
            timeout=parse_duration(spec.train.timeout),
            holdout=spec.holdout,
            metrics=tuple(spec.metrics),
            retries=spec.retries,
            cwd=self.base,
            significance=Significance(sig.test, sig.alpha, sig.metric, sig.resamples, sig.seed) if sig else None,
            fairness=Fairness(fair.attribute, fair.max_increase, fair.max_gap) if fair else None,
            shadow=spec.shadow is not None,
        )

    def target(self) -> Target | None:
        deploy = self.spec.deploy
        if deploy is None:
            return None
        local = LocalTarget(self.resolve(deploy.path))
        if deploy.target == "http":
            assert deploy.url is not None  # the schema requires it for an http target
            return HttpTarget(local, deploy.url, deploy.health, parse_duration(deploy.timeout))
        return local

    def promote_if(self) -> PromoteIf:
        """The gate's condition over ``candidate.*`` and ``champion.*``; a first model passes."""
        gate = self.policy.promote_if[self.name]

        def promote_if(candidate: dict[str, float], champion: dict[str, float] | None) -> bool:
            if champion is None:
                return True
            return gate.evaluate({"candidate": candidate, "champion": champion})

        return promote_if

    def rollback_if(self) -> RollbackIf:
        """The verification's condition over ``live.*``, ``champion.*`` and ``candidate.*``."""
        cond = self.policy.rollback_if[self.name]

        def rollback_if(
            live: dict[str, float],
            champion: dict[str, float] | None,
            candidate: dict[str, float] | None,
        ) -> bool:
            return cond.evaluate({"live": live, "champion": champion or {}, "candidate": candidate or {}})

        return rollback_if
