"""Alertmanager's API v2 client, as Prometheus' notifier sends: ``POST /api/v2/alerts`` to each
URL on its own, firing alerts resent at an interval with ``endsAt`` a few intervals ahead (so an
Alertmanager resolves them itself if driftwarden dies), ``endsAt`` set on resolve, and a bounded
set of firing alerts to resend whose overflow is dropped and counted.

>>> a = {"labels": {"alertname": "r", "model": "m", "severity": "critical"}, "annotations": {"summary": "s"},
...      "startsAt": 0.0, "endsAt": None, "status": "firing"}
>>> body = postable(a, wall=120.0, resend=60.0)
>>> body["startsAt"], body["endsAt"], body["labels"]["alertname"]
('1970-01-01T00:00:00Z', '1970-01-01T00:06:00Z', 'r')
>>> postable({**a, "status": "resolved", "endsAt": 30.0}, wall=120.0, resend=60.0)["endsAt"]
'1970-01-01T00:00:30Z'
"""

from __future__ import annotations

import datetime as dt
import threading
import urllib.error
import urllib.request
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

VALID_FOR_RESENDS = 4
"""A firing alert's endsAt is this many resend intervals ahead (Prometheus: 4 x resend delay)."""

DEFAULT_MAX_FIRING = 10_000
"""Firing alerts kept for resends; beyond it the oldest is dropped (counted): bounded memory."""

TEMPORARY_STATUS = frozenset({408, 425, 429})
"""4xx answers worth retrying; any other 4xx is a permanent failure (the alert itself is wrong)."""


class DeliveryError(Exception):
    """A delivery that did not go through; ``permanent`` ones are not retried."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


def iso(ts: float) -> str:
    """RFC 3339 in UTC, as Alertmanager reads it."""
    t = dt.datetime.fromtimestamp(ts, dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S") + (f".{t.microsecond:06d}".rstrip("0") if t.microsecond else "") + "Z"


def postable(alert: Mapping[str, Any], *, wall: float, resend: float, generator_url: str = "") -> dict[str, Any]:
    """One alert as Alertmanager's ``postableAlert``. Firing: ``endsAt`` = wall clock + 4 resends;
    resolved: its event-time end. Alertmanager keeps wall-clock time: neither time is later than
    the wall clock (a resolved alert resolves now; a stream stamped ahead of it still posts)."""
    starts = min(float(alert["startsAt"]), wall)  # event time ahead of the wall clock (a replayed stream)
    if alert["status"] == "resolved":
        ends = min(float(alert["endsAt"]), wall)
        starts = min(starts, ends)
    else:
        ends = wall + VALID_FOR_RESENDS * resend
    body = {
        "labels": {k: str(v) for k, v in alert["labels"].items()},
        "annotations": {k: str(v) for k, v in alert["annotations"].items()},
        "startsAt": iso(starts),
        "endsAt": iso(ends),
    }
    if generator_url:
        body["generatorURL"] = generator_url
    return body


def post(url: str, alerts: Sequence[Mapping[str, Any]], timeout: float) -> None:
    """``POST <url>/api/v2/alerts``; :class:`DeliveryError` when it did not go through."""
    request = urllib.request.Request(
        url.rstrip("/") + "/api/v2/alerts",
        data=orjson.dumps(list(alerts)),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
    except urllib.error.HTTPError as e:
        detail = e.read()[:300].decode(errors="replace")
        permanent = 400 <= e.code < 500 and e.code not in TEMPORARY_STATUS
        raise DeliveryError(f"Alertmanager {url} answered {e.code}: {detail}", permanent=permanent) from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise DeliveryError(f"Alertmanager {url} unreachable: {reason}") from None


class FiringSet:
    """The firing alerts to resend, by fingerprint, oldest first, at most ``capacity``."""

    def __init__(self, capacity: int = DEFAULT_MAX_FIRING) -> None:
        self.capacity = capacity
        self.dropped = 0
        self._alerts: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def update(self, alert: Mapping[str, Any]) -> None:
        """Track a firing alert, forget a resolved one."""
        fp = str(alert["fingerprint"])
        with self._lock:
            if alert["status"] == "resolved":
                self._alerts.pop(fp, None)
                return
            self._alerts[fp] = dict(alert)
            self._alerts.move_to_end(fp)
            while len(self._alerts) > self.capacity:
                self._alerts.popitem(last=False)
                self.dropped += 1

    def alerts(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._alerts.values())

    def __len__(self) -> int:
        with self._lock:
            return len(self._alerts)
