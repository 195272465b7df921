"""Run what decisions ask for — alerts and retrains — outside the ingestion loop, recording every step.

An intent is in the store (state ``pending``) before the runner sees it. The runner moves it
through its states and records each one; an action's exception never escapes into the loop.
On start, :meth:`ActionRunner.recover` runs intents that never started and marks those that
were interrupted mid-way as failed — a restart never trains or deploys twice.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import orjson

from daemon.store import Store
from deploy.lifecycle import RetrainSpec, retrain
from deploy.registry import LocalRegistry
from deploy.targets import LocalTarget
from policies.durations import parse_duration
from policies.loader import LoadedPolicy

log = logging.getLogger("driftwarden.actions")

Listener = Callable[[dict[str, Any]], None]
DataProvider = Callable[[str, int, int], Any]
"""(model, upto event index, last N rows) → the labeled training frame."""


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
    """Executes intents: ``alert`` to the alerts sink and the log; ``retrain`` through the deploy lifecycle.

    ``synchronous`` runs each action to its end before :meth:`submit` returns (replay-exact demos
    and tests); otherwise each action runs in its own worker thread.
    """

    def __init__(
        self,
        store: Store,
        policies: Mapping[str, LoadedPolicy],
        data: DataProvider,
        workdir: Path,
        registry: LocalRegistry,
        alerts: JsonlSink,
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
        self._lock = threading.Lock()

    @property
    def busy_models(self) -> set[str]:
        """Models with a retrain in flight (for inhibition)."""
        with self._lock:
            return {k.split("/", 1)[0] for k in self._running}

    def recover(self) -> None:
        """After a restart: run intents that never started; fail those interrupted mid-way."""
        for action in self.store.unfinished_actions():
            if action["state"] == "pending":
                log.info("resuming action %s, which never started", action["key"])
                self.submit([action["key"]])
            else:
                reason = f"interrupted: the daemon stopped while {action['state']}; not retried automatically"
                log.warning("action %s %s", action["key"], reason)
                self._record(action["key"], "failed", {"reason": reason})

    def submit(self, keys: list[str]) -> None:
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
                self._start(action)
            else:
                self._record(key, "failed", {"reason": f"unknown action type {action['type']!r}"})

    def _alert(self, action: dict[str, Any]) -> None:
        info = action["info"]
        alert = {"type": "alert", "model": action["model"], "rule": action["rule"], "at": action["at"],
                 "ts": action["ts"], "severity": info.get("severity", "warning"), "reason": info.get("reason", ""),
                 "labels": info.get("labels", {}), "annotations": info.get("annotations", {})}
        self.alerts.write(alert)
        self.alerts.flush()
        log.warning("ALERT %s/%s at event %d: %s", action["model"], action["rule"], action["at"], alert["reason"])
        self._record(action["key"], "done", {})

    def _start(self, action: dict[str, Any]) -> None:
        with self._lock:
            if action["key"] in self._running:
                return
            self._running.add(action["key"])
        if self.synchronous:
            self._retrain(action)
            return
        t = threading.Thread(target=self._retrain, args=(action,), name=f"retrain:{action['key']}", daemon=True)
        self._threads.append(t)
        t.start()

    def _retrain(self, action: dict[str, Any]) -> None:
        key, model = action["key"], action["model"]
        try:
            policy = self.policies[model]
            spec = policy.spec.actions[action["action"]]
            assert spec.train is not None
            rspec = RetrainSpec(
                entrypoint=spec.train.entrypoint, command=spec.train.command, params=spec.train.params,
                timeout=parse_duration(spec.train.timeout), holdout=spec.holdout, metrics=tuple(spec.metrics),
                retries=spec.retries,
            )
            frame = self.data(model, action["at"], spec.data.last)
            target = LocalTarget(self.resolve(spec.deploy.path)) if spec.deploy else None
            gate = policy.promote_if[action["action"]]

            def promote_if(candidate: dict[str, float], champion: dict[str, float] | None) -> bool:
                if champion is None:
                    return True
                return gate.evaluate({"candidate": candidate, "champion": champion})

            def record(state: str, info: dict[str, Any]) -> None:
                self._record(key, state, info, version=info.get("version"), attempt=state == "training")

            log.info("retraining %s on %d labeled events (decision %s)", model, len(frame), key)
            outcome = retrain(
                rspec, model, frame, self.workdir / key.replace("/", "_"), self.registry, target, promote_if, record,
                lineage={"decision": key, "rule": action["rule"], "at": action["at"], "policy": str(policy.path)},
            )
            log.info("retrain %s ended %s %s", key, outcome.state, outcome.reason)
        except Exception as e:  # noqa: BLE001 - an action's failure is recorded, never raised into the loop
            log.exception("retrain %s failed", key)
            self._record(key, "failed", {"reason": f"{type(e).__name__}: {e}"})
        finally:
            with self._lock:
                self._running.discard(key)

    def _record(self, key: str, state: str, info: dict[str, Any], version: str | None = None, attempt: bool = False) -> None:
        self.store.update_action(key, state, info, version=version, attempt=attempt)
        if self.listener is not None:
            row = self.store.action(key) or {}
            self.listener({"type": "action", "model": row.get("model"), "at": row.get("at"), "ts": row.get("ts"),
                           "key": key, "action": row.get("action"), "rule": row.get("rule"), "state": state,
                           "version": row.get("version"), **{k: v for k, v in info.items() if k not in ("state", "version")}})

    def resolve(self, path: str | Path) -> Path:
        """A deploy path: relative paths are relative to the daemon's state directory."""
        p = Path(path)
        return p if p.is_absolute() else self.base / p

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for running actions; True when none is left."""
        for t in list(self._threads):
            t.join(timeout)
        self._threads = [t for t in self._threads if t.is_alive()]
        return not self._threads


