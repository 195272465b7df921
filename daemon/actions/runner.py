"""Run what decisions ask for — alerts and retrains — outside the ingestion loop, recording
every step.

An intent is in the store (state ``pending``) before the runner sees it. The runner moves it
through its states (:mod:`driftwarden.deploy.states`) and records each one
(``store.update_action``, which also appends to the audit log); an action's exception never
escapes into the loop. What a phase needs from the policy comes from its
:class:`~driftwarden.daemon.actions.plans.ActionPlan`.

One model's phases run one at a time, in the order of its decisions (a worker thread per
model with work, or the loop's thread when ``synchronous``): a second retrain of a model waits
for the first to end and then gates against the champion the first left. It is not superseded:
every decision is carried out and audited, and the newest decision runs last, so after any
interleaving the champion is the model of the newest decision that passed its gate. The
champion itself moves by compare-and-swap (``Registry.move_champion``), so an operator's
promote between a gate and its promotion makes the candidate ``rejected`` as stale.

Two phases wait for live labeled traffic (:mod:`driftwarden.daemon.actions.windows`), checked
by :meth:`ActionRunner.poll` after every batch:

- ``shadowing`` (the action's ``shadow: {window: N}``): the candidate is registered as
  ``challenger`` but not served; once N labeled events newer than the decision are buffered
  (none of them was trained on), the candidate and the champion are scored on them and the
  gate decides on those scores.
- ``verifying`` (``verify: {window: N}``, or ``rollback_if`` alone with
  :data:`~driftwarden.daemon.actions.plans.DEFAULT_VERIFY_WINDOW`): once N labeled events
  arrived after the deploy, the deployed model and the version it replaced are scored on them;
  ``rollback_if`` holding rolls back.

After a restart, :meth:`ActionRunner.recover` acts on every unfinished action as
:mod:`driftwarden.daemon.actions.recovery` says.

Scale-out over Kafka (daemon/partitions.py) hands actions over with their model's partition:
:meth:`ActionRunner.release` gives up a model's unfinished actions on the daemon that loses the
partition (queued phases dropped, trainers killed, short phases waited for, nothing recorded
after), and :meth:`ActionRunner.adopt` carries them on at the new owner from the records that came
with the partition, as a restart would.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

from driftwarden.daemon.actions.plans import DEFAULT_VERIFY_WINDOW, ActionPlan
from driftwarden.daemon.actions.recovery import Recovery, recovery_for, stored_outcome
from driftwarden.daemon.actions.windows import SHADOW, VERIFY, DataProvider, LiveWindows
from driftwarden.daemon.io.sinks import Sink
from driftwarden.daemon.state.store import ActionRecord, Store
from driftwarden.deploy.lifecycle import Outcome, abandon, deploy_version, judge, retrain, rollback, verify
from driftwarden.deploy.registry import CHALLENGER, CHAMPION, PREVIOUS, Registry
from driftwarden.deploy.states import OUTCOME_STATES, TERMINAL_STATES, ActionState
from driftwarden.deploy.targets import Target
from driftwarden.policies.loader import LoadedPolicy

log = logging.getLogger("driftwarden.actions")

#: How often a bounded stop looks whether the phases it waits for have ended.
STOP_POLL_SECONDS = 0.05
HANDOVER_WAIT_SECONDS = 10.0
"""How long a release waits for a model's running short phase (a gate, a deploy, a rollback: seconds)
to end, so that its record is whole when the action is handed over; one cut short is repeated by
the next owner. Well inside Kafka's max.poll.interval.ms (5 min), since it runs in a rebalance."""

Listener = Callable[[dict[str, Any]], None]


class Stopped(BaseException):
    r"""Raised into a worker that outlived :meth:`ActionRunner.stop`, or whose action was
    :meth:`~ActionRunner.release`\ d, when it tries to record: the daemon is exiting (the next
    start carries the action on from its last record) or another daemon carries it on (a
    ``BaseException``, so no phase takes it for a failure of its own)."""


Phase = Callable[[ActionRecord, Any], None]
"""One step of an action, run by :meth:`ActionRunner._start`: (the record, the data it needs)."""


class ActionRunner:
    """Executes intents: ``alert`` to the alerts sink and the log; ``retrain`` through the deploy
    lifecycle.

    ``synchronous`` runs each action to its end before :meth:`submit` returns (replay-exact demos
    and tests); otherwise each action runs in its own worker thread. The data provider is only
    called from the loop's thread (:meth:`submit`, :meth:`poll`, :meth:`recover`).
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
        position: Callable[[], int] | None = None,
    ) -> None:
        self.store, self.policies, self.data = store, policies, data
        self.base = Path(base) if base is not None else Path.cwd()
        self.workdir, self.registry, self.alerts = Path(workdir), registry, alerts
        self.execute, self.synchronous = execute, synchronous
        self.listener = listener
        self.position = position
        """The loop's next event index: recorded with each outcome (``observed_at``), the event
        position where an action's span was seen to end."""
        self.windows = LiveWindows(data)
        """Actions waiting for live labeled rows."""
        self._threads: list[threading.Thread] = []
        self._running: set[str] = set()
        """Actions queued or running."""
        self._queues: dict[str, deque[tuple[ActionRecord, Phase, Any]]] = {}
        """model → its phases in order, the first one running: one model's actions never overlap."""
        self._training: set[str] = set()
        """Actions whose phase waits for a launched trainer (a bounded stop leaves them to the next start)."""
        self._released: set[str] = set()
        """Actions given up (:meth:`release`): nothing of them runs or is recorded here any more."""
        self._stopped = threading.Event()
        self._lock = threading.Lock()

    @property
    def running(self) -> int:
        """Actions running or queued behind their model's running one (not those waiting for live
        traffic): what backpressure bounds."""
        with self._lock:
            return len(self._running)

    @property
    def watching_models(self) -> set[str]:
        """Models whose rollout waits for live rows (shadow, verification): their events should not wait."""
        return {k.split("/", 1)[0] for k in self.windows.keys()}

    @property
    def busy_models(self) -> set[str]:
        """Models with a retrain or rollout in flight (for inhibition)."""
        with self._lock:
            keys = set(self._running)
        return {k.split("/", 1)[0] for k in keys | self.windows.keys()}

    # -- entry points (loop thread) --------------------------------------------------------------

    def recover(self, only: Callable[[ActionRecord], bool] | None = None) -> None:
        """After a restart: act on every unfinished action (those ``only`` accepts) according to
        what really happened (:mod:`driftwarden.daemon.actions.recovery`); never train twice."""
        for action in self.store.unfinished_actions():
            if only is not None and not only(action):
                continue
            try:
                self._recover(action)
            except Exception as e:  # noqa: BLE001 - one bad record must not stop the daemon
                log.exception("cannot recover action %s", action.key)
                self._record(action.key, ActionState.FAILED, {"reason": f"recovery failed: {type(e).__name__}: {e}"})
        self.poll()

    def release(self, models: Collection[str], timeout: float = HANDOVER_WAIT_SECONDS) -> list[str]:
        """Give up the unfinished actions of ``models``, whose partition goes to another daemon
        (which carries them on from their records): queued phases are dropped, a running trainer
        is killed (the training starts again at the next owner: never two trainings of one
        decision at once), waits for live traffic end; a running short phase (a gate, a deploy)
        is waited for up to ``timeout`` s so its record is whole. From then on nothing of them runs
        or is recorded here. Returns their keys (loop thread only)."""
        models = set(models)
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                heads: dict[str, str] = {}
                for model in models:
                    queue = self._queues.get(model)
                    if not queue:
                        continue
                    heads[model] = queue[0][0].key
                    self._released.update(a.key for a, _, _ in list(queue)[1:])  # dropped before they start
                kill = [k for k in heads.values() if k in self._training and k not in self._released]
                self._released.update(kill)
            for key in kill:
                killed = abandon(self._workdir(key))
                log.warning("action %s handed over while training: trainer %s killed", key, killed or "(gone)")
            if not heads:
                break
            if time.monotonic() >= deadline:
                log.warning("handing over %s before their running phases ended", sorted(heads.values()))
                with self._lock:
                    self._released.update(heads.values())
                break
            time.sleep(STOP_POLL_SECONDS)
        for key, _ in self.windows.waiting():
            if key.split("/", 1)[0] in models:
                self.windows.unwatch(key)
        keys = [a.key for a in self.store.unfinished_actions() if a.model in models]
        with self._lock:
            self._released.update(keys)
        return keys

    def adopt(self, keys: Collection[str]) -> None:
        """Carry on actions another daemon handed over, from their records (now in the store), as
        a restart carries on its own (:meth:`recover`)."""
        with self._lock:
            self._released.difference_update(keys)
        self.recover(only=lambda action: action.key in keys)

    def submit(self, keys: list[str]) -> None:
        """Run new intents, then :meth:`poll` the actions waiting for live traffic."""
        for key in keys:
            action = self.store.action(key)
            if action is None or action.state != ActionState.PENDING:
                continue
            if action.info.get("dry_run") or not self.execute:
                self._record(key, ActionState.SKIPPED, {"reason": "dry run: decision recorded, nothing executed"})
                continue
            if action.type == "alert":
                self._alert(action)
            elif action.type == "retrain":
                self._retrain_now(action)
            else:
                self._record(key, ActionState.FAILED, {"reason": f"unknown action type {action.type!r}"})
        self.poll()

    def poll(self) -> None:
        """Start the shadow judgements and verifications whose live window is complete."""
        with self._lock:
            running = set(self._running)
        for key, window in self.windows.waiting(excluding=running):
            action = self.store.action(key)
            if action is None:
                continue
            try:
                if window.after is None:  # the deploy just finished: the window starts now
                    window = self.windows.begin(key, action.model)
                    self._record(key, ActionState.VERIFYING, {"verify": {"after": window.after, "window": window.size}})
                frame = self.windows.complete(action.model, window)
                if frame is None:
                    continue
            except Exception as e:  # noqa: BLE001
                log.exception("checking action %s failed", key)
                self.windows.unwatch(key)
                self._record(
                    key,
                    ActionState.FAILED,
                    {"reason": f"{type(e).__name__} while waiting for live traffic: {e}"},
                )
                continue
            self.windows.unwatch(key)
            self._start(action, self._judge if window.phase == SHADOW else self._verify, frame)

    def _retrain_now(self, action: ActionRecord) -> None:
        """Queue ``action``'s retrain (a new one, or one resumed after a restart in its folder)."""
        try:  # the data is read here, in the loop's thread, not in the worker
            frame = self.data(action.model, action.at, self.plan(action).data_last)
        except Exception as e:  # noqa: BLE001 - e.g. the policy lost the action
            log.exception("cannot start action %s", action.key)
            self._record(action.key, ActionState.FAILED, {"reason": f"cannot start: {type(e).__name__}: {e}"})
            return
        self._start(action, self._retrain, frame)

    def stop(self, timeout: float) -> list[str]:
        """A bounded stop: wait at most ``timeout`` seconds for the running phases, except those
        that only wait for a trainer (it runs in its own session and the next start adopts it);
        then refuse every further record, so a worker that outlives the daemon's exit changes
        nothing. Returns the actions left running."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                busy = self._running - self._training
            if not busy or self.wait(timeout=0):
                break
            time.sleep(STOP_POLL_SECONDS)
        self._stopped.set()
        with self._lock:
            left = sorted(self._running)
        for key in left:
            waits = "its trainer keeps running and the next start adopts it" if key in self._training else ""
            log.warning("stopping with action %s unfinished; %s", key, waits or "the next start resumes it")
        return left

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for running actions, at most ``timeout`` seconds in all; True when none is left."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for t in list(self._threads):
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        self._threads = [t for t in self._threads if t.is_alive()]
        return not self._threads

    def plan(self, action: ActionRecord) -> ActionPlan:
        """What ``action``'s policy says about it, as the deploy lifecycle takes it (read anew
        each time: a reloaded policy applies to the next phase)."""
        return ActionPlan(self.policies[action.model], action.action, self.base)

    def deploy_target(self, model: str) -> Target | None:
        """Where ``model``'s policy deploys (its first retrain action with a ``deploy``), or None
        (an operator's promote or rollback goes there)."""
        policy = self.policies[model]
        for name in policy.spec.actions:
            if policy.spec.action_type(name) == "retrain":
                plan = ActionPlan(policy, name, self.base)
                if plan.has_target:
                    return plan.target()
        return None

    # -- recovery --------------------------------------------------------------------------------

    def _recover(self, action: ActionRecord) -> None:
        key, state, info = action.key, action.state, action.info
        match recovery_for(action, has_target=lambda: self.plan(action).has_target):
            case Recovery.RUN:
                log.info("resuming action %s, which never started", key)
                self.submit([key])
            case Recovery.RESUME_TRAINING:
                outcome = stored_outcome(self._workdir(key))
                if outcome is not None:  # it ended; only the record of its end was lost
                    self._record(key, outcome.state, {**outcome.to_json(), "recovered": True}, version=outcome.version)
                    self._after_outcome(action, outcome)
                    return
                log.warning("action %s was interrupted while %s; resuming it (its trainer is adopted)", key, state)
                with self._lock:
                    self._training.add(key)  # it waits for an adopted trainer until its next record
                self._retrain_now(action)
            case Recovery.FAIL_JUDGEMENT:
                self._clear_challenger(action)
                reason = "interrupted while judging the challenger; it was never served"
                self._record(key, ActionState.FAILED, {"reason": reason})
            case Recovery.NOTHING:
                pass
            case Recovery.FINISH_DEPLOY:
                log.warning(
                    "action %s was interrupted while %s; finishing the deploy of %s", key, state, action.version
                )
                self._start(action, self._finish_deploy, None)
            case Recovery.REPEAT_ROLLBACK:
                log.warning("action %s was interrupted while rolling back; repeating it", key)
                self._start(action, self._finish_rollback, None)
            case Recovery.WATCH_SHADOW:
                self.windows.watch(key, SHADOW, int(action.at), int(info.get("shadow_window") or DEFAULT_VERIFY_WINDOW))
            case Recovery.START_VERIFY:  # the daemon stopped before the verification started
                self.windows.watch(key, VERIFY, None, int(info["verify_window"]))
            case Recovery.WATCH_VERIFY:
                v = info.get("verify") or {}
                self.windows.watch(key, VERIFY, v.get("after"), int(v.get("window") or DEFAULT_VERIFY_WINDOW))
            case Recovery.UNKNOWN:
                self._record(key, ActionState.FAILED, {"reason": f"interrupted in unknown state {state!r}"})

    def _finish_deploy(self, action: ActionRecord, _frame: Any) -> None:
        version = action.version
        target = self.plan(action).target()
        if target is None or version is None:
            reason = f"cannot finish the deploy of {version}: no target"
            self._record(action.key, ActionState.FAILED, {"reason": reason})
            return
        # the version its gate compared with: the champion moves from it or not at all
        info = action.info
        previous = info["previous"] if "previous" in info else info.get("champion_version")
        if "previous" not in info and "champion_version" not in info:  # a record of an older daemon
            aliases = self.registry.aliases(action.model)
            champion = aliases.get(CHAMPION)
            previous = champion if champion != version else aliases.get(PREVIOUS)
        outcome = deploy_version(action.model, version, previous, self.registry, target, self._recorder(action))
        self._after_outcome(action, outcome)

    def _finish_rollback(self, action: ActionRecord, _frame: Any) -> None:
        info = action.info
        rollback(
            action.model,
            self.registry,
            self.plan(action).target(),
            self._recorder(action),
            info.get("reason", ""),
            to=info.get("version"),
            replacing=info.get("replacing"),
        )

    def _clear_challenger(self, action: ActionRecord) -> None:
        if action.version and self.registry.aliases(action.model).get(CHALLENGER) == action.version:
            self.registry.set_alias(action.model, CHALLENGER, None)

    # -- the phases (worker thread, or the loop thread when synchronous) --------------------------

    def _start(self, action: ActionRecord, phase: Phase, frame: Any) -> None:
        """Queue ``phase`` of ``action`` behind the phases of its model already queued or
        running: one model's phases run one at a time, in the order they were started (its
        decisions' order), each model in its own worker thread."""
        key = action.key
        with self._lock:
            if key in self._running:
                return
            self._running.add(key)
            queue = self._queues.setdefault(action.model, deque())
            queue.append((action, phase, frame))
            if len(queue) > 1:
                log.info("action %s waits for %s of model %s", key, queue[0][0].key, action.model)
                return
        if self.synchronous:
            self._work(action.model)
            return
        t = threading.Thread(target=self._work, args=(action.model,), name=f"actions:{action.model}", daemon=True)
        self._threads.append(t)
        t.start()

    def _work(self, model: str) -> None:
        """Run ``model``'s queued phases until its queue is empty."""
        while True:
            with self._lock:
                queue = self._queues[model]
                if not queue:
                    del self._queues[model]
                    return
                action, phase, frame = queue[0]
            try:
                if action.key not in self._released:
                    phase(action, frame)
            except Stopped:
                if self._stopped.is_set():
                    return  # the daemon stopped (bounded stop) and is exiting: nothing more is recorded
            except Exception as e:  # noqa: BLE001 - an action's failure is recorded, never raised into the loop
                log.exception("action %s failed", action.key)
                try:
                    self._record(action.key, ActionState.FAILED, {"reason": f"{type(e).__name__}: {e}"})
                except Stopped:
                    if self._stopped.is_set():
                        return
            finally:
                with self._lock:
                    queue.popleft()
                    self._running.discard(action.key)
                    self._training.discard(action.key)

    def _retrain(self, action: ActionRecord, frame: Any) -> None:
        key, model = action.key, action.model
        plan = self.plan(action)
        log.info("retraining %s on %d labeled events (decision %s)", model, len(frame), key)
        outcome = retrain(
            plan.retrain_spec(),
            model,
            frame,
            self._workdir(key),
            self.registry,
            plan.target(),
            plan.promote_if(),
            self._recorder(action),
            lineage={"decision": key, "rule": action.rule, "at": action.at, "policy": str(plan.policy.path)},
            sleep=self._sleeper(key),
        )
        log.info("retrain %s ended %s %s", key, outcome.state, outcome.reason)
        self._after_outcome(action, outcome)

    def _judge(self, action: ActionRecord, frame: Any) -> None:
        plan = self.plan(action)
        outcome = judge(
            plan.retrain_spec(),
            action.model,
            _registered(action),
            frame,
            self._workdir(action.key),
            self.registry,
            plan.target(),
            plan.promote_if(),
            self._recorder(action),
        )
        log.info("shadow judgement %s ended %s %s", action.key, outcome.state, outcome.reason)
        self._after_outcome(action, outcome)

    def _verify(self, action: ActionRecord, frame: Any) -> None:
        plan = self.plan(action)
        rollback_if = plan.rollback_if()
        current = self.store.action(action.key) or action
        outcome = verify(
            action.model,
            _registered(current),
            current.info.get("previous"),
            frame,
            rollback_if,
            self.registry,
            plan.target(),
            self._recorder(action),
            metrics=plan.spec.metrics,
            workdir=self._workdir(action.key),
        )
        log.info("verification %s ended %s %s", action.key, outcome.state, outcome.reason)

    def _after_outcome(self, action: ActionRecord, outcome: Outcome) -> None:
        """Queue what waits for live traffic after a phase ended."""
        plan = self.plan(action)
        if outcome.state == ActionState.SHADOWING and plan.shadow_window is not None:
            self.windows.watch(action.key, SHADOW, int(action.at), plan.shadow_window)
        elif outcome.state == ActionState.DEPLOYED and plan.verify_window is not None:
            self.windows.watch(action.key, VERIFY, None, plan.verify_window)

    # -- alerts, records -----------------------------------------------------------------------------

    def _alert(self, action: ActionRecord) -> None:
        info = action.info
        alert = {
            "type": "alert",
            "model": action.model,
            "rule": action.rule,
            "at": action.at,
            "ts": action.ts,
            "severity": info.get("severity", "warning"),
            "reason": info.get("reason", ""),
            "labels": info.get("labels", {}),
            "annotations": info.get("annotations", {}),
        }
        self.alerts.write(alert)
        self.alerts.flush()
        log.warning("ALERT %s/%s at event %d: %s", action.model, action.rule, action.at, alert["reason"])
        self._record(action.key, ActionState.DONE, {})

    def _recorder(self, action: ActionRecord) -> Callable[[ActionState, dict[str, Any]], None]:
        """The ``record`` callback of the lifecycle for ``action``: each state goes to the store
        (and the listener), with the windows that will follow it."""
        key = action.key
        plan = self.plan(action) if action.type == "retrain" else None
        verify_window = plan.verify_window if plan is not None else None
        shadow_window = plan.shadow_window if plan is not None else None

        def record(state: ActionState, info: dict[str, Any]) -> None:
            if state == ActionState.DEPLOYED and verify_window is not None:
                info = {**info, "verify_window": verify_window}
            if state == ActionState.SHADOWING and shadow_window is not None:
                info = {**info, "shadow_window": shadow_window}
            self._record(key, state, info, version=info.get("version"), attempt=state == ActionState.TRAINING)

        return record

    def _sleeper(self, key: str) -> Callable[[float], None]:
        """A retry's wait that ends with :class:`Stopped` once ``key`` is released or the runner stopped."""

        def sleep(seconds: float) -> None:
            deadline = time.monotonic() + seconds
            while not (self._stopped.is_set() or key in self._released):
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                time.sleep(min(left, STOP_POLL_SECONDS))
            raise Stopped

        return sleep

    def _record(
        self,
        key: str,
        state: ActionState,
        info: dict[str, Any],
        version: str | None = None,
        attempt: bool = False,
    ) -> None:
        if self._stopped.is_set() or key in self._released:
            raise Stopped
        with self._lock:  # a trainer runs from its recorded launch until the next state
            if state == ActionState.TRAINING and "trainer" in info:
                self._training.add(key)
            else:
                self._training.discard(key)
        if self.position is not None and state in OUTCOME_STATES | TERMINAL_STATES:
            info = {**info, "observed_at": self.position()}
        self.store.update_action(key, state, info, version=version, attempt=attempt)
        if self.listener is not None:
            row = self.store.action(key)
            self.listener(
                {
                    "type": "action",
                    "model": row.model if row else None,
                    "at": row.at if row else None,
                    "ts": row.ts if row else None,
                    "key": key,
                    "action": row.action if row else None,
                    "rule": row.rule if row else None,
                    "state": state,
                    "version": row.version if row else None,
                    **{k: v for k, v in info.items() if k not in ("state", "version")},
                }
            )

    def _workdir(self, key: str) -> Path:
        return self.workdir / key.replace("/", "_")


def _registered(action: ActionRecord) -> str:
    """The version an action registered (the phases after registration need it)."""
    if action.version is None:
        raise ValueError(f"action {action.key} in state {action.state} has no registered version")
    return action.version
