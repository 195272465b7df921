"""Run what decisions ask for — alerts and retrains — outside the ingestion loop, recording
every step.

An intent is in the store (state ``pending``) before the runner sees it. The runner moves it
through its states and records each one (``store.update_action``, which also appends to the
audit log); an action's exception never escapes into the loop. A retrain goes::

    pending → training → evaluating → rejected
                                   └→ promoted → deploying → deployed
                                        [→ verifying → verified | rolling_back → rolled_back]
    pending → training → shadowing → evaluating → rejected | promoted → deploying → deployed …
    (any step) → failed

Two phases wait for live labeled traffic, checked by :meth:`ActionRunner.poll` after every
batch (the loop calls :meth:`submit` after every batch):

- ``shadowing`` (the action's ``shadow: {window: N}``): the candidate is registered as
  ``challenger`` but not served; once N labeled events newer than the decision are buffered
  (none of them was trained on), the candidate and the champion are scored on them and the
  gate decides on those scores.
- ``verifying`` (``verify: {window: N}``, or ``rollback_if`` alone with
  :data:`DEFAULT_VERIFY_WINDOW`): once N labeled events arrived after the deploy, the deployed
  model and the version it replaced are scored on them; ``rollback_if`` holding rolls back.

Restart (:meth:`ActionRunner.recover`), observing what is really there before acting:

- ``pending``: never started — run it now;
- ``training`` / ``evaluating``: interrupted — the orphaned trainer is killed and the action
  marked failed (a decision never trains twice), unless its outcome was already stored;
- ``promoted`` (with a deploy target) / ``deploying``: the candidate is registered — the deploy
  is finished (target deploys are idempotent; the serving path always held one whole model)
  and the aliases moved;
- ``rolling_back``: the rollback is repeated with the recorded versions (idempotent);
- ``shadowing`` / ``verifying`` (or ``deployed`` before its verification was recorded): keep
  waiting for the live window.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import orjson
from driftwarden.daemon.io.sinks import Sink
from driftwarden.daemon.state.store import Store
from driftwarden.deploy.gate import Fairness, Significance
from driftwarden.deploy.lifecycle import (
    OUTCOME_FILE,
    Outcome,
    RetrainSpec,
    abandon,
    deploy_version,
    judge,
    retrain,
    rollback,
    verify,
)
from driftwarden.deploy.registry import CHALLENGER, CHAMPION, PREVIOUS, Registry
from driftwarden.deploy.targets import HttpTarget, LocalTarget, Target
from driftwarden.policies.durations import parse_duration
from driftwarden.policies.loader import LoadedPolicy

log = logging.getLogger("driftwarden.actions")

Listener = Callable[[dict[str, Any]], None]
DataProvider = Callable[[str, int, int], Any]
"""(model, upto event index, last N rows) → the labeled frame (features, ``__label``,
``__index``…)."""

DEFAULT_VERIFY_WINDOW = 500
"""Labeled events checked after a deploy when a policy has ``rollback_if`` but no ``verify``:
enough for accuracy to within about ±0.04 (95 %)."""

_ALL = sys.maxsize
"""``upto`` meaning every buffered row."""

INTERRUPTED_TRAINING = ("training", "evaluating")
INTERRUPTED_DEPLOY = ("promoted", "deploying")


class JsonlSink:
    """Append JSON lines to a file (alerts, dead letters), flushed on demand."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._pending: list[bytes] = []

    def write(self, obj: Mapping[str, Any]) -> None:
        with self._lock:
            self._pending.append(orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n")

    def flush(self) -> None:
        with self._lock:
            if self._pending:
                with self.path.open("ab") as f:
                    f.writelines(self._pending)
                self._pending = []


class ActionRunner:
    """Executes intents: ``alert`` to the alerts sink and the log; ``retrain`` through the deploy
    lifecycle.

    ``synchronous`` runs each action to its end before :meth:`submit` returns (replay-exact demos
    and tests); otherwise each action runs in its own worker thread. The data provider is only
    called from the loop's thread (:meth:`submit`, :meth:`recover`).
    """

    def __init__(
        self,
        store: Store,
        policies: Mapping[str, LoadedPolicy],
        data: DataProvider,
        workdir: Path,
        registry: Registry,
        alerts: Sink,
        *,
        execute: bool = True,
        synchronous: bool = False,
        listener: Listener | None = None,
        base: Path | None = None,
    ) -> None:
        self.store, self.policies, self.data = store, policies, data
        self.base = Path(base) if base is not None else Path.cwd()
        self.workdir, self.registry, self.alerts = Path(workdir), registry, alerts
        self.execute, self.synchronous = execute, synchronous
        self.listener = listener
        self._threads: list[threading.Thread] = []
        self._running: set[str] = set()
        self._waiting: dict[str, dict[str, Any]] = {}
        """Actions waiting for live labeled rows: key → {"phase", "after", "window"}."""
        self._lock = threading.Lock()

    @property
    def running(self) -> int:
        """Actions running now (not those waiting for live traffic): what backpressure bounds."""
        with self._lock:
            return len(self._running)

    @property
    def busy_models(self) -> set[str]:
        """Models with a retrain or rollout in flight (for inhibition)."""
        with self._lock:
            return {k.split("/", 1)[0] for k in self._running | set(self._waiting)}

    # -- entry points (loop thread) --------------------------------------------------------------

    def recover(self) -> None:
        """After a restart: act on every unfinished action according to what really happened
        (see the module docstring); never train twice."""
        for action in self.store.unfinished_actions():
            try:
                self._recover(action)
            except Exception as e:  # noqa: BLE001 - one bad record must not stop the daemon
                log.exception("cannot recover action %s", action["key"])
                self._record(action["key"], "failed", {"reason": f"recovery failed: {type(e).__name__}: {e}"})
        for action in self.store.actions(where="state = 'deployed' AND type = 'retrain'"):
            info = action["info"]
            if info.get("verify_window") and not info.get("verify"):  # died before "verifying"
                self._watch(action["key"], "verify", None, int(info["verify_window"]))
        self.poll()

    def submit(self, keys: list[str]) -> None:
        """Run new intents, then :meth:`poll` the actions waiting for live traffic."""
        for key in keys:
            action = self.store.action(key)
            if action is None or action["state"] != "pending":
                continue
            if action["info"].get("dry_run") or not self.execute:
                self._record(key, "skipped", {"reason": "dry run: decision recorded, nothing executed"})
                continue
            if action["type"] == "alert":
                self._alert(action)
            elif action["type"] == "retrain":
                try:  # the data is read here, in the loop's thread, not in the worker
                    frame = self.data(action["model"], action["at"], self._spec(action).data.last)
                except Exception as e:  # noqa: BLE001 - e.g. the policy lost the action
                    log.exception("cannot start action %s", key)
                    reason = f"cannot start: {type(e).__name__}: {e}"
                    self._record(key, "failed", {"reason": reason})
                    continue
                self._start(action, self._retrain, frame)
            else:
                self._record(key, "failed", {"reason": f"unknown action type {action['type']!r}"})
        self.poll()

    def poll(self) -> None:
        """Start the shadow judgements and verifications whose live window is complete."""
        with self._lock:
            waiting = [(k, dict(w)) for k, w in self._waiting.items() if k not in self._running]
        for key, w in waiting:
            action = self.store.action(key)
            if action is None:
                continue
            try:
                if w["after"] is None:  # the deploy just finished: the window starts now
                    w["after"] = self._last_index(action["model"])
                    with self._lock:
                        self._waiting[key]["after"] = w["after"]
                    self._record(key, "verifying", {"verify": {"after": w["after"], "window": w["window"]}})
                frame = self.data(action["model"], _ALL, w["window"])
                if len(frame) < w["window"] or int(frame["__index"].min()) <= w["after"]:
                    continue
            except Exception as e:  # noqa: BLE001
                log.exception("checking action %s failed", key)
                self._unwatch(key)
                self._record(
                    key,
                    "failed",
                    {"reason": f"{type(e).__name__} while waiting for live traffic: {e}"},
                )
                continue
            self._unwatch(key)
            self._start(action, self._judge if w["phase"] == "shadow" else self._verify, frame)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for running actions; True when none is left."""
        for t in list(self._threads):
            t.join(timeout)
        self._threads = [t for t in self._threads if t.is_alive()]
        return not self._threads

    def resolve(self, path: str | Path) -> Path:
        """A deploy path: relative paths are relative to the daemon's state directory."""
        p = Path(path)
        return p if p.is_absolute() else self.base / p

    # -- recovery --------------------------------------------------------------------------------

    def _recover(self, action: dict[str, Any]) -> None:
        key, state, info = action["key"], action["state"], action["info"]
        if state == "pending":
            log.info("resuming action %s, which never started", key)
            self.submit([key])
        elif state in INTERRUPTED_TRAINING and info.get("on") != "live":
            killed = abandon(self._workdir(key))
            stored = self._workdir(key) / OUTCOME_FILE
            if stored.is_file():  # it ended; only the record of its end was lost
                outcome = Outcome.from_json(orjson.loads(stored.read_bytes()))
                self._record(
                    key,
                    outcome.state,
                    {**outcome.to_json(), "recovered": True},
                    version=outcome.version,
                )
                self._after_outcome(action, outcome)
                return
            reason = (
                f"interrupted: the daemon stopped while {state}; not retried, so the decision trains at most once"
            ) + (f" (killed the orphaned trainer, pid {killed})" if killed else "")
            log.warning("action %s %s", key, reason)
            self._record(key, "failed", {"reason": reason})
        elif state == "evaluating":  # a shadow judgement: the challenger was never served
            self._clear_challenger(action)
            self._record(
                key,
                "failed",
                {"reason": "interrupted while judging the challenger; it was never served"},
            )
        elif state == "promoted" and self._spec(action).deploy is None:
            pass  # the final state of a retrain without a deploy target: nothing to finish
        elif state in INTERRUPTED_DEPLOY:
            log.warning(
                "action %s was interrupted while %s; finishing the deploy of %s",
                key,
                state,
                action["version"],
            )
            self._start(action, self._finish_deploy, None)
        elif state == "rolling_back":
            log.warning("action %s was interrupted while rolling back; repeating it", key)
            self._start(action, self._finish_rollback, None)
        elif state == "shadowing":
            self._watch(
                key,
                "shadow",
                int(action["at"]),
                int(info.get("shadow_window") or DEFAULT_VERIFY_WINDOW),
            )
        elif state == "verifying":
            v = info.get("verify") or {}
            self._watch(key, "verify", v.get("after"), int(v.get("window") or DEFAULT_VERIFY_WINDOW))
        else:
            self._record(key, "failed", {"reason": f"interrupted in unknown state {state!r}"})

    def _finish_deploy(self, action: dict[str, Any], _frame: Any) -> None:
        spec, version = self._spec(action), action["version"]
        target = self._target(spec)
        if target is None or version is None:
            self._record(
                action["key"],
                "failed",
                {"reason": f"cannot finish the deploy of {version}: no target"},
            )
            return
        previous = action["info"].get("previous")
        if previous is None:
            aliases = self.registry.aliases(action["model"])
            champion = aliases.get(CHAMPION)
            previous = champion if champion != version else aliases.get(PREVIOUS)
        outcome = deploy_version(action["model"], version, previous, self.registry, target, self._recorder(action))
        self._after_outcome(action, outcome)

    def _finish_rollback(self, action: dict[str, Any], _frame: Any) -> None:
        info = action["info"]
        rollback(
            action["model"],
            self.registry,
            self._target(self._spec(action)),
            self._recorder(action),
            info.get("reason", ""),
            to=info.get("version"),
            replacing=info.get("replacing"),
        )

    def _clear_challenger(self, action: dict[str, Any]) -> None:
        if action["version"] and self.registry.aliases(action["model"]).get(CHALLENGER) == action["version"]:
            self.registry.set_alias(action["model"], CHALLENGER, None)

    # -- the phases (worker thread, or the loop thread when synchronous) --------------------------

    def _start(self, action: dict[str, Any], phase: Callable[[dict[str, Any], Any], None], frame: Any) -> None:
        key = action["key"]
        with self._lock:
            if key in self._running:
                return
            self._running.add(key)

        def body() -> None:
            try:
                phase(action, frame)
            except Exception as e:  # noqa: BLE001 - an action's failure is recorded, never raised into the loop
                log.exception("action %s failed", key)
                self._record(key, "failed", {"reason": f"{type(e).__name__}: {e}"})
            finally:
                with self._lock:
                    self._running.discard(key)

        if self.synchronous:
            body()
            return
        t = threading.Thread(target=body, name=f"{phase.__name__.strip('_')}:{key}", daemon=True)
        self._threads.append(t)
        t.start()

    def _retrain(self, action: dict[str, Any], frame: Any) -> None:
        key, model = action["key"], action["model"]
        policy = self.policies[model]
        spec = self._spec(action)
        log.info("retraining %s on %d labeled events (decision %s)", model, len(frame), key)
        outcome = retrain(
            self._retrain_spec(spec),
            model,
            frame,
            self._workdir(key),
            self.registry,
            self._target(spec),
            self._promote_if(action),
            self._recorder(action),
            lineage={
                "decision": key,
                "rule": action["rule"],
                "at": action["at"],
                "policy": str(policy.path),
            },
        )
        log.info("retrain %s ended %s %s", key, outcome.state, outcome.reason)
        self._after_outcome(action, outcome)

    def _judge(self, action: dict[str, Any], frame: Any) -> None:
        spec = self._spec(action)
        outcome = judge(
            self._retrain_spec(spec),
            action["model"],
            action["version"],
            frame,
            self._workdir(action["key"]),
            self.registry,
            self._target(spec),
            self._promote_if(action),
            self._recorder(action),
        )
        log.info("shadow judgement %s ended %s %s", action["key"], outcome.state, outcome.reason)
        self._after_outcome(action, outcome)

    def _verify(self, action: dict[str, Any], frame: Any) -> None:
        spec = self._spec(action)
        policy = self.policies[action["model"]]
        cond = policy.rollback_if[action["action"]]
        current = self.store.action(action["key"]) or action

        def rollback_if(
            live: dict[str, float],
            champion: dict[str, float] | None,
            candidate: dict[str, float] | None,
        ) -> bool:
            return cond.evaluate({"live": live, "champion": champion or {}, "candidate": candidate or {}})

        outcome = verify(
            action["model"],
            current["version"],
            current["info"].get("previous"),
            frame,
            rollback_if,
            self.registry,
            self._target(spec),
            self._recorder(action),
            metrics=spec.metrics,
            workdir=self._workdir(action["key"]),
        )
        log.info("verification %s ended %s %s", action["key"], outcome.state, outcome.reason)

    def _after_outcome(self, action: dict[str, Any], outcome: Outcome) -> None:
        """Queue what waits for live traffic after a phase ended."""
        spec = self._spec(action)
        if outcome.state == "shadowing" and spec.shadow is not None:
            self._watch(action["key"], "shadow", int(action["at"]), spec.shadow.window)
        elif outcome.state == "deployed" and self._verify_window(action) is not None:
            self._watch(action["key"], "verify", None, self._verify_window(action))  # type: ignore[arg-type]

    # -- helpers -----------------------------------------------------------------------------------

    def _spec(self, action: dict[str, Any]) -> Any:
        return self.policies[action["model"]].spec.actions[action["action"]]

    def _retrain_spec(self, spec: Any) -> RetrainSpec:
        assert spec.train is not None
        sig = spec.significance
        fair = spec.fairness
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

    def _target(self, spec: Any) -> Target | None:
        if spec.deploy is None:
            return None
        local = LocalTarget(self.resolve(spec.deploy.path))
        if spec.deploy.target == "http":
            return HttpTarget(local, spec.deploy.url, spec.deploy.health, parse_duration(spec.deploy.timeout))
        return local

    def _promote_if(self, action: dict[str, Any]) -> Callable[[dict[str, float], dict[str, float] | None], bool]:
        gate = self.policies[action["model"]].promote_if[action["action"]]

        def promote_if(candidate: dict[str, float], champion: dict[str, float] | None) -> bool:
            if champion is None:
                return True
            return gate.evaluate({"candidate": candidate, "champion": champion})

        return promote_if

    def _verify_window(self, action: dict[str, Any]) -> int | None:
        spec = self._spec(action)
        if action["action"] not in self.policies[action["model"]].rollback_if:
            return None
        return spec.verify.window if spec.verify is not None else DEFAULT_VERIFY_WINDOW

    def _recorder(self, action: dict[str, Any]) -> Callable[[str, dict[str, Any]], None]:
        key = action["key"]
        window = self._verify_window(action) if action["type"] == "retrain" else None
        spec = self._spec(action) if action["type"] == "retrain" else None

        def record(state: str, info: dict[str, Any]) -> None:
            if state == "deployed" and window is not None:
                info = {**info, "verify_window": window}
            if state == "shadowing" and spec is not None and spec.shadow is not None:
                info = {**info, "shadow_window": spec.shadow.window}
            self._record(key, state, info, version=info.get("version"), attempt=state == "training")

        return record

    def _watch(self, key: str, phase: str, after: int | None, window: int) -> None:
        with self._lock:
            self._waiting[key] = {"phase": phase, "after": after, "window": window}
        log.info("action %s waits for %d live labeled events (%s)", key, window, phase)

    def _unwatch(self, key: str) -> None:
        with self._lock:
            self._waiting.pop(key, None)

    def _last_index(self, model: str) -> int:
        frame = self.data(model, _ALL, 1)
        return int(frame["__index"].iloc[-1]) if len(frame) else -1

    def _workdir(self, key: str) -> Path:
        return self.workdir / key.replace("/", "_")

    def _alert(self, action: dict[str, Any]) -> None:
        info = action["info"]
        alert = {
            "type": "alert",
            "model": action["model"],
            "rule": action["rule"],
            "at": action["at"],
            "ts": action["ts"],
            "severity": info.get("severity", "warning"),
            "reason": info.get("reason", ""),
            "labels": info.get("labels", {}),
            "annotations": info.get("annotations", {}),
        }
        self.alerts.write(alert)
        self.alerts.flush()
        log.warning(
            "ALERT %s/%s at event %d: %s",
            action["model"],
            action["rule"],
            action["at"],
            alert["reason"],
        )
        self._record(action["key"], "done", {})

    def _record(
        self,
        key: str,
        state: str,
        info: dict[str, Any],
        version: str | None = None,
        attempt: bool = False,
    ) -> None:
        self.store.update_action(key, state, info, version=version, attempt=attempt)
        if self.listener is not None:
            row = self.store.action(key) or {}
            self.listener(
                {
                    "type": "action",
                    "model": row.get("model"),
                    "at": row.get("at"),
                    "ts": row.get("ts"),
                    "key": key,
                    "action": row.get("action"),
                    "rule": row.get("rule"),
                    "state": state,
                    "version": row.get("version"),
                    **{k: v for k, v in info.items() if k not in ("state", "version")},
                }
            )
