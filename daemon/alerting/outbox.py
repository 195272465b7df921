"""The outbox: notifications written in the checkpoint transaction that made them, delivered by a
worker thread — at least once, each with its idempotency key, never lost.

:meth:`Outbox.rows` turns an alert's transition into one row per destination: each Alertmanager
URL on its own, and the routed receiver's apprise URLs, each on its own (one that is down never
holds back the others). The worker takes due rows, tries each, and records the outcome: delivered;
a temporary failure retried after an exponential backoff with jitter; a permanent failure (an
Alertmanager's 4xx, an unusable URL) or one still failing after ``give_up_after`` recorded as
``failed`` with its reason (the store's outbox and audit log, :meth:`Outbox.stats`). A restart
finds the pending rows in the store and delivers them; a crash between a send and its record
sends that one again (the receiver deduplicates by the key).

Besides the outbox, the worker resends still-firing alerts to Alertmanager every ``resend`` and
repeats them to receivers every ``repeat_interval`` (best effort, from memory, as Prometheus does).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from driftwarden.daemon.alerting import alertmanager, notifiers
from driftwarden.daemon.alerting.alerts import Notification
from driftwarden.daemon.alerting.config import AlertingConfig
from driftwarden.daemon.state.store import OutboxRow, Store

log = logging.getLogger("driftwarden.alerting")

JITTER = 0.5
"""Each retry delay is scaled by a random factor in [1 - JITTER, 1 + JITTER]: retries of many
notifications do not hit a recovering receiver at the same instant."""

IDLE_WAIT = 1.0
"""Longest sleep of the worker when nothing is due: resends and repeats are looked at this often."""

BATCH = 100
"""Rows taken per pass."""

DRAIN_SECONDS = 5.0
"""A graceful stop tries the pending rows once more for at most this long: a supervisor's
SIGTERM grace period (Kubernetes: 30 s) leaves room for it."""


class Outbox:
    """Destinations of notifications, and the worker that delivers them."""

    def __init__(
        self,
        store: Store,
        config: AlertingConfig,
        *,
        clock: Callable[[], float] = time.time,
        seed: int | None = None,
        external_url: str | None = None,
    ) -> None:
        self.store, self.config, self.clock = store, config, clock
        self.external_url = external_url or config.external_url
        self._rng = random.Random(seed)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.firing = alertmanager.FiringSet()
        self._repeats: dict[str, tuple[str, float, dict[str, Any]]] = {}
        """Notification key base → (receiver destination, last sent wall time, alert)."""
        self._last_resend = clock()
        self.counts = {"delivered": 0, "retried": 0, "failed": 0, "resent": 0, "repeated": 0}
        seconds = config.seconds
        self.backoff = seconds(config.delivery.backoff)
        self.max_backoff = seconds(config.delivery.max_backoff)
        self.give_up_after = seconds(config.delivery.give_up_after)
        self.repeat = seconds(config.repeat_interval)
        am = config.alertmanager
        self.resend = seconds(am.resend) if am else 0.0
        self.timeout = seconds(am.timeout) if am else 10.0

    # -- writing (the loop's thread) ---------------------------------------------------------------

    def rows(self, notes: Iterable[Notification]) -> list[OutboxRow]:
        """The outbox rows of these transitions (written by the checkpoint)."""
        out = []
        for n in notes:
            for dest in self.destinations(n):
                out.append(OutboxRow(f"{n.key}@{dest}", n.key, n.model, dest, n.status, dict(n.alert)))
        return out

    def destinations(self, n: Notification) -> list[str]:
        """``alertmanager <url>`` for each Alertmanager; ``receiver <name>#<i>`` for each URL of the
        routed receiver (resolved notifications only with ``send_resolved``)."""
        out = []
        if self.config.alertmanager is not None:
            out += [f"alertmanager {url}" for url in self.config.alertmanager.urls]
        name = notifiers.route(self.config, n.alert["labels"])
        if name is not None and (n.status == "firing" or self.config.send_resolved):
            out += [f"receiver {name}#{i}" for i in range(len(self.config.receiver(name).urls))]
        return out

    # -- the worker --------------------------------------------------------------------------------

    def start(self) -> None:
        """Deliver in a daemon thread until :meth:`stop`; alerts firing at the last stop are resent."""
        self._resume()
        self._thread = threading.Thread(target=self._work, name="alert-outbox", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """New rows were checkpointed: look now."""
        self._wake.set()

    def stop(self, drain: float = DRAIN_SECONDS) -> None:
        """Stop the worker; a graceful stop first gives every pending row one more try, due or
        not, for at most ``drain`` seconds (what is left is delivered after the next start)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(drain + self.timeout)
            self._thread = None
        deadline = time.monotonic() + drain
        for row in self.store.outbox("state = 'pending'", limit=BATCH):
            if time.monotonic() >= deadline:
                break
            self._try(row)

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                self.deliver_due()
                self.resend_firing()
            except Exception:  # noqa: BLE001 - the worker never dies; each row's failure is recorded
                log.exception("alert delivery pass failed; trying again")
            nxt = self.store.outbox_next()
            wait = IDLE_WAIT if nxt is None else min(IDLE_WAIT, max(0.0, nxt - self.clock()))
            self._wake.wait(wait)
            self._wake.clear()

    def deliver_due(self) -> int:
        """One pass over the due rows; returns how many were delivered."""
        delivered = 0
        for row in self.store.outbox_due(self.clock(), BATCH):
            if self._stop.is_set():
                break
            if self._try(row):
                delivered += 1
        return delivered

    def _try(self, row: Mapping[str, Any]) -> bool:
        key, alert = row["key"], row["payload"]
        if row["status"] == "resolved":  # never "resolved" before its "firing" reached that destination
            firing = key.replace("/resolved@", "/firing@", 1)
            if self.store.outbox("key = ? AND state = 'pending'", (firing,), limit=1):
                return False
        try:
            self._send(row["destination"], alert, row["notification"])
        except alertmanager.DeliveryError as e:
            age = self.clock() - float(row["created"])
            if e.permanent or age >= self.give_up_after:
                why = "permanent" if e.permanent else f"given up after {row['attempts'] + 1} tries"
                log.error("notification %s failed (%s): %s", key, why, e)
                self.store.outbox_update(key, "failed", error=f"{why}: {e}")
                self.counts["failed"] += 1
                return False
            delay = min(self.max_backoff, self.backoff * 2 ** int(row["attempts"]))
            delay *= 1 + self._rng.uniform(-JITTER, JITTER)
            log.warning("notification %s not delivered (%s); retrying in %.1f s", key, e, delay)
            self.store.outbox_update(key, "pending", next_at=self.clock() + delay, error=str(e))
            self.counts["retried"] += 1
            return False
        self.store.outbox_update(key, "delivered")
        self.counts["delivered"] += 1
        self._delivered(row["destination"], alert, row["notification"])
        return True

    def _send(self, destination: str, alert: Mapping[str, Any], key: str) -> None:
        kind, _, target = destination.partition(" ")
        if kind == "alertmanager":
            body = alertmanager.postable(
                alert, wall=self.clock(), resend=self.resend or 60.0, generator_url=self._generator(alert)
            )
            alertmanager.post(target, [body], self.timeout)
        elif kind == "receiver":
            name, _, index = target.rpartition("#")
            try:
                receiver = self.config.receiver(name)
                receiver.urls[int(index)]
            except (StopIteration, IndexError, ValueError):
                raise alertmanager.DeliveryError(
                    f"receiver {target!r} is not in the alerting config any more", permanent=True
                ) from None
            notifiers.send(receiver, int(index), alert, key)
        else:
            raise alertmanager.DeliveryError(f"unknown destination {destination!r}", permanent=True)

    def _generator(self, alert: Mapping[str, Any]) -> str:
        evidence = alert.get("annotations", {}).get("evidence")
        return str(evidence) if evidence else (self.external_url or "")

    def _delivered(self, destination: str, alert: Mapping[str, Any], key: str) -> None:
        base = key.rsplit("/", 1)[0]
        if destination.startswith("alertmanager "):
            self.firing.update(alert)
        elif alert["status"] == "resolved":
            self._repeats = {k: v for k, v in self._repeats.items() if not k.startswith(base + "@")}
        else:
            self._repeats[f"{base}@{destination}"] = (destination, self.clock(), dict(alert))

    def resend_firing(self) -> None:
        """Resend firing alerts to every Alertmanager (each ``resend``) and repeat them to receivers
        (each ``repeat_interval``); failures here are logged only: the outbox already delivered them."""
        now = self.clock()
        am = self.config.alertmanager
        if am is not None and now - self._last_resend >= self.resend and len(self.firing):
            self._last_resend = now
            bodies = [
                alertmanager.postable(a, wall=now, resend=self.resend, generator_url=self._generator(a))
                for a in self.firing.alerts()
            ]
            for url in am.urls:
                try:
                    alertmanager.post(url, bodies, self.timeout)
                    self.counts["resent"] += len(bodies)
                except alertmanager.DeliveryError as e:
                    log.warning("resend to %s failed: %s; next try in %.0f s", url, e, self.resend)
        for k, (dest, last, alert) in list(self._repeats.items()):
            if now - last < self.repeat:
                continue
            self._repeats[k] = (dest, now, alert)
            n = int((now - float(alert.get("startsAt", now))) // max(self.repeat, 1.0))
            try:
                self._send(dest, alert, f"{k.split('@', 1)[0]}/repeat-{n}")
                self.counts["repeated"] += 1
            except alertmanager.DeliveryError as e:
                log.warning("repeat of %s failed: %s", k, e)

    def _resume(self) -> None:
        """After a restart: the alerts whose firing notification was delivered and that have not
        resolved are firing again in memory (for resends and repeats)."""
        rows = self.store.outbox("state = 'delivered'", limit=alertmanager.DEFAULT_MAX_FIRING)
        resolved = {r["notification"].rsplit("/", 1)[0] for r in rows if r["status"] == "resolved"}
        for r in rows:
            if r["status"] == "firing" and r["notification"].rsplit("/", 1)[0] not in resolved:
                self._delivered(r["destination"], r["payload"], r["notification"])

    def stats(self) -> dict[str, Any]:
        """Counters for /metrics and the status page: this process's deliveries, retries and
        failures, the outbox's rows per state, and the firing alerts dropped from the resend set."""
        return {
            **self.counts,
            "dropped": self.firing.dropped,
            "firing": len(self.firing),
            "outbox": self.store.outbox_counts(),
        }


def failed(store: Store, limit: int = 100) -> Sequence[dict[str, Any]]:
    """The notifications that failed for good, newest last (the history's view)."""
    return store.outbox("state = 'failed'", limit=limit)
