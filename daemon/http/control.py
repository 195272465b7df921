"""Operators' commands, run by the loop between batches.

The HTTP thread never touches the loop's objects: it queues a command (a function of the daemon)
and the loop runs it at the top of its next turn (:meth:`Commands.run`), after the batch it was in
has been checkpointed. A command's result or exception comes back through a future.

A manual retrain is a :class:`Decision` like any other (rule ``manual``, its key from the
request's ``Idempotency-Key`` or a fresh id), written in a checkpoint before anything runs and then
run through the same action lifecycle; the same key twice starts one action.

A silence is stored (``Store.set_silences``) before the call is answered, and a restarted daemon
applies the stored silences that have not ended yet: they end by wall time, not by the run.
"""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from driftwarden.deploy.lifecycle import rollback
from driftwarden.deploy.registry import CHAMPION, PREVIOUS
from driftwarden.deploy.targets import Target
from driftwarden.policies.engine import Decision

log = logging.getLogger("driftwarden.http")

MANUAL_RULE = "manual"
"""The rule name of decisions an operator made."""

Command = Callable[[Any], Any]


class Commands:
    """A queue of commands from the HTTP thread, drained by the loop thread."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[Command, Future[Any]]] = queue.SimpleQueue()
        self._silenced = False
        self._loaded = False

    def submit(self, command: Command) -> Future[Any]:
        future: Future[Any] = Future()
        self._queue.put((command, future))
        return future

    def run(self, daemon: Any) -> None:
        """Run what was queued (loop thread); then apply the operators' silences to the engines
        (at the first turn, those stored by an earlier run that have not ended)."""
        if not self._loaded:
            self._loaded = True
            now = time.time()
            daemon.publisher.silences.update({k: t for k, t in daemon.store.silences().items() if t > now})
        while True:
            try:
                command, future = self._queue.get_nowait()
            except queue.Empty:
                break
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(command(daemon))
            except Exception as e:  # noqa: BLE001 - an operator's bad request must not stop the loop
                future.set_exception(e)
        self._silenced = _apply_silences(daemon, self._silenced)


# -- the commands (each runs in the loop thread) --------------------------------------------------


def retrain_action(policy: Any, name: str | None) -> str:
    """The retrain action a manual retrain runs: ``name``, or the policy's first retrain action."""
    actions = policy.spec.actions
    if name is not None:
        if name not in actions or policy.spec.action_type(name) != "retrain":
            raise LookupError(f"policy of {policy.model!r} has no retrain action {name!r}")
        return name
    for action in actions:
        if policy.spec.action_type(action) == "retrain":
            return str(action)
    raise LookupError(f"policy of {policy.model!r} has no retrain action")


def manual_retrain(model: str, action: str, key: str, caller: str, reason: str) -> Command:
    def command(daemon: Any) -> str:
        at = max(daemon.checkpoint.next_index - 1, 0)  # the last event read: its labeled data trains
        why = f"manual retrain requested by {caller} through the HTTP API" + (f": {reason}" if reason else "")
        decision = Decision(
            model=model,
            rule=MANUAL_RULE,
            action=action,
            action_type="retrain",
            at=at,
            ts=time.time(),
            key=key,
            reason=why,
            labels={"caller": caller},
        )
        daemon.decide([decision])
        row = daemon.store.action(key)
        return str(row.state) if row is not None else "pending"

    return command


def promote(model: str, version: str) -> Command:
    def command(daemon: Any) -> dict[str, Any]:
        registry = daemon.registry
        target = deploy_target(daemon, model)
        v = registry.get(model, version) if version[1:].isdigit() else registry.alias(model, version)
        if v is None:
            raise LookupError(f"model {model!r} has no version or alias {version!r}")
        old = registry.aliases(model).get(CHAMPION)
        if target is not None:
            target.deploy(v)
        if old and old != v.version:
            registry.set_alias(model, PREVIOUS, old)
        registry.set_alias(model, CHAMPION, v.version)
        return {"model": model, "champion": v.version, "previous": old, "deployed": target is not None}

    return command


def roll_back(model: str, reason: str) -> Command:
    def command(daemon: Any) -> dict[str, Any]:
        outcome = rollback(model, daemon.registry, deploy_target(daemon, model), lambda state, info: None, reason)
        return outcome.to_json()  # type: ignore[no-any-return]

    return command


def reload_policies() -> Command:
    def command(daemon: Any) -> dict[str, Any]:
        before = {m: p.digest for m, p in daemon.policies.items()}
        daemon.reload_policies()
        after = {m: p.digest for m, p in daemon.policies.items()}
        return {m: {"digest": after[m], "reloaded": after[m] != before.get(m)} for m in after}

    return command


def silence(model: str, rule: str, seconds: float) -> Command:
    def command(daemon: Any) -> dict[str, Any]:
        until = time.time() + seconds
        daemon.publisher.silences[(model, rule)] = until
        daemon.store.set_silences(daemon.publisher.silences)  # a restart keeps it until it ends
        return {"model": model, "rule": rule, "until": until}

    return command


def deploy_target(daemon: Any, model: str) -> Target | None:
    """Where the model's policy deploys (its first retrain action's ``deploy``), or None."""
    return daemon.actions.deploy_target(model)  # type: ignore[no-any-return]


def _apply_silences(daemon: Any, was_silenced: bool) -> bool:
    """Tell each engine which of its rules are silenced now; True while any is."""
    book = daemon.publisher.silences
    if not book and not was_silenced:
        return False
    now = time.time()
    ended = [k for k, until in book.items() if until <= now]
    for key in ended:
        del book[key]
        log.info("silence of rule %s of model %s ended", key[1], key[0])
    if ended:
        daemon.store.set_silences(book)
    for model, pipe in daemon.pipelines.items():
        pipe.engine.silenced = frozenset(rule for (m, rule) in book if m == model)
    return bool(book)
