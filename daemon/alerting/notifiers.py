"""Notifications to people through apprise: receivers by name (apprise URLs), routes by label
matchers (first match wins, then the default receiver), message templates.

>>> from driftwarden.daemon.alerting.config import AlertingConfig
>>> c = AlertingConfig.model_validate({
...     "receivers": [{"name": "mail", "urls": ["mailto://u:p@127.0.0.1:2525?to=ops@example.com"]},
...                   {"name": "hook", "urls": ["json://127.0.0.1:8080/hook"]}],
...     "routes": [{"match": {"severity": "critical"}, "receiver": "mail"}],
...     "default_receiver": "hook"})
>>> route(c, {"severity": "critical", "model": "m"}), route(c, {"severity": "warning"})
('mail', 'hook')
>>> message(c.receiver("hook"), {"labels": {"alertname": "r", "model": "m", "severity": "warning"},
...     "annotations": {"summary": "it moved"}, "status": "firing", "startsAt": 0.0, "endsAt": None}, "k")[0]
'[FIRING] r on m (warning)'
"""

from __future__ import annotations

import logging
import re
import urllib.parse
from collections.abc import Mapping
from typing import Any

from driftwarden.daemon.alerting import templates
from driftwarden.daemon.alerting.alertmanager import DeliveryError, iso
from driftwarden.daemon.alerting.config import AlertingConfig, ReceiverConfig, expand_env

log = logging.getLogger("driftwarden.alerting")

DEFAULT_TITLE = "[{STATUS}] {alertname} on {model} ({severity})"
"""Title of a notification: what, where, how bad."""

DEFAULT_BODY = (
    "{summary}\n\n{description}\n\nrunbook: {runbook_url}\nevidence: {evidence}\n"
    "started: {startsAt}  ended: {endsAt}\nlabels: {labels}\nidempotency key: {key}"
)
"""Body of a notification: the annotations, then the facts to find it again."""

KEY_HEADER = "X-Driftwarden-Key"
"""HTTP header carrying the idempotency key to webhook receivers (json://, xml://, form://)."""

_HTTP_SCHEMES = ("json", "jsons", "xml", "xmls", "form", "forms")


def route(config: AlertingConfig, labels: Mapping[str, str]) -> str | None:
    """The receiver of an alert: the first route whose matchers all hold, else the default."""
    for r in config.routes:
        if all(labels.get(k) == v for k, v in r.match.items()) and all(
            re.fullmatch(p, labels.get(k, "")) for k, p in r.match_re.items()
        ):
            return r.receiver
    return config.default_receiver


def fields(alert: Mapping[str, Any], key: str) -> dict[str, Any]:
    """What a title or body template may name: the labels, the annotations, ``status``/``STATUS``,
    ``startsAt``/``endsAt`` (RFC 3339), ``labels`` (``k=v, ...``) and ``key``."""
    annotations = alert.get("annotations", {})
    labels = alert.get("labels", {})
    out: dict[str, Any] = {"runbook_url": "-", "evidence": "-", "summary": "", "description": ""}
    out.update(labels)
    out.update(annotations)
    out.update(
        status=alert["status"],
        STATUS=str(alert["status"]).upper(),
        startsAt=iso(float(alert["startsAt"])),
        endsAt=iso(float(alert["endsAt"])) if alert.get("endsAt") is not None else "-",
        labels=", ".join(f"{k}={v}" for k, v in sorted(labels.items())),
        key=key,
    )
    return out


def message(receiver: ReceiverConfig, alert: Mapping[str, Any], key: str) -> tuple[str, str]:
    """(title, body) of the notification, from the receiver's templates or the defaults."""
    f = fields(alert, key)
    return templates.render(receiver.title or DEFAULT_TITLE, f), templates.render(receiver.body or DEFAULT_BODY, f)


def with_key(url: str, key: str) -> str:
    """An apprise URL that carries the idempotency key as a header, for webhook schemes."""
    scheme = url.split("://", 1)[0].lower()
    if scheme not in _HTTP_SCHEMES:
        return url
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}+{KEY_HEADER}={urllib.parse.quote(key, safe='')}"


def send(receiver: ReceiverConfig, index: int, alert: Mapping[str, Any], key: str) -> None:
    """Send one notification to the receiver's ``index``-th URL; :class:`DeliveryError` if apprise
    reports a failure (apprise gives no reason beyond its log: retried until given up)."""
    import apprise

    try:
        url = expand_env(receiver.urls[index])
    except KeyError as e:
        raise DeliveryError(f"receiver {receiver.name}: environment variable {e.args[0]} is not set") from None
    title, body = message(receiver, alert, key)
    client = apprise.Apprise()
    if not client.add(with_key(url, key)):
        raise DeliveryError(f"receiver {receiver.name}: apprise cannot use URL #{index}", permanent=True)
    kind = apprise.NotifyType.SUCCESS if alert["status"] == "resolved" else apprise.NotifyType.FAILURE
    if not client.notify(title=title, body=body, notify_type=kind):
        raise DeliveryError(f"receiver {receiver.name}: URL #{index} failed (apprise's log says why)")
