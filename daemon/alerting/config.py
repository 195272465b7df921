"""The ``alerting:`` section of the daemon config, checked like policies: every error at once, each
as ``file:line:col: field: message``.

>>> import tempfile, pathlib
>>> p = pathlib.Path(tempfile.mkdtemp()) / "config.yaml"
>>> _ = p.write_text('''alerting:
...   alertmanager: {urls: ["http://127.0.0.1:9093"], resend: soon}
...   receivers:
...     - {name: hook, urls: ["json://127.0.0.1:8080/hook"]}
...   routes:
...     - {match: {severity: critical}, receiver: pager}
...   default_receiver: hook
... ''')
>>> for e in check_alerting(p): print(e.replace(str(p.parent) + "/", ""))
config.yaml:2:59: alerting.alertmanager.resend: not a duration: 'soon' (use a number and a unit: 30s, 10m, 6h, 1d, 1w)
config.yaml:6:47: alerting.routes[0].receiver: unknown receiver 'pager'; receivers: hook
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from driftwarden.policies.durations import parse_duration
from pydantic import BaseModel, ConfigDict, Field, ValidationError

DEFAULT_RESEND = "1m"
"""Resend still-firing alerts to Alertmanager this often (Prometheus' --rules.alert.resend-delay)."""

DEFAULT_TIMEOUT = "10s"
"""One HTTP call to Alertmanager or a receiver: long enough for a loaded server, short enough to move on."""

DEFAULT_REPEAT = "4h"
"""Notify a receiver again about an alert still firing after this long (Alertmanager's repeat_interval)."""

DEFAULT_BACKOFF = "1s"
"""First retry delay of a failed delivery; doubled each try, with jitter."""

DEFAULT_MAX_BACKOFF = "1m"
"""Longest delay between two tries: a receiver that comes back is served within a minute."""

DEFAULT_GIVE_UP = "1d"
"""A notification still undelivered after this long is recorded as failed (a receiver down for a day)."""

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AlertmanagerConfig(_Strict):
    """Alertmanager's API v2: each URL gets every alert (an HA cluster), each tried on its own."""

    urls: list[str] = Field(min_length=1, description="Alertmanager base URLs, e.g. http://127.0.0.1:9093.")
    resend: str = Field(DEFAULT_RESEND, description="Resend still-firing alerts this often.")
    timeout: str = Field(DEFAULT_TIMEOUT, description="Timeout of one POST.")


class ReceiverConfig(_Strict):
    """A named receiver: apprise URLs (mailto://, slack://, json://, ...); ``${VAR}`` reads the environment."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    urls: list[str] = Field(min_length=1)
    title: str | None = Field(None, description="Title template (default: status, alertname, model, severity).")
    body: str | None = Field(None, description="Body template (default: summary, description, runbook, key).")


class RouteConfig(_Strict):
    """A route: every label in ``match`` equal (and every ``match_re`` regex matching the whole value)."""

    match: dict[str, str] = Field(default_factory=dict)
    match_re: dict[str, str] = Field(default_factory=dict)
    receiver: str


class DeliveryConfig(_Strict):
    """Retries of the outbox: exponential backoff with jitter, then a recorded failure."""

    backoff: str = DEFAULT_BACKOFF
    max_backoff: str = DEFAULT_MAX_BACKOFF
    give_up_after: str = DEFAULT_GIVE_UP


class AlertingConfig(_Strict):
    """Where alerts go: Alertmanager, and/or apprise receivers chosen by routes (first match wins)."""

    alertmanager: AlertmanagerConfig | None = None
    receivers: list[ReceiverConfig] = Field(default_factory=list)
    routes: list[RouteConfig] = Field(default_factory=list)
    default_receiver: str | None = None
    repeat_interval: str = Field(DEFAULT_REPEAT, description="Notify receivers again about an alert still firing.")
    send_resolved: bool = Field(True, description="Tell receivers when an alert resolves.")
    delivery: DeliveryConfig = Field(default_factory=DeliveryConfig)
    evidence: bool = Field(True, description="An Evidently report of the window behind each drift alert.")
    external_url: str | None = Field(
        None, description="Base URL of this daemon's HTTP server: alerts link to <external_url>/evidence/<file>."
    )

    def seconds(self, value: str) -> float:
        return parse_duration(value)

    def receiver(self, name: str) -> ReceiverConfig:
        return next(r for r in self.receivers if r.name == name)


def expand_env(url: str, env: Any = None) -> str:
    """``${VAR}`` replaced from the environment (secrets stay out of config files); KeyError when unset."""
    env = os.environ if env is None else env
    return _ENV.sub(lambda m: env[m.group(1)], url)


def check_alerting(path: str | Path, text: str | None = None) -> list[str]:
    """Every error of the ``alerting:`` section of the config file at ``path`` (empty: valid or absent)."""
    return load_alerting(path, text)[1]


def load_alerting(path: str | Path, text: str | None = None) -> tuple[AlertingConfig | None, list[str]]:
    """The ``alerting:`` section and its errors as ``file:line:col: field: message``."""
    file = str(path)
    text = Path(path).read_text() if text is None else text
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text) or {}
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        return None, [f"{file}:{mark.line + 1 if mark else 1}:{mark.column + 1 if mark else 1}: YAML: {e.problem}"]
    raw = data.get("alerting") if isinstance(data, dict) else None
    if raw is None:
        return None, []
    nodes: dict[tuple[Any, ...], yaml.Node] = {}
    keys: dict[tuple[Any, ...], yaml.Node] = {}
    _walk(node, (), nodes, keys)

    def at(loc: tuple[Any, ...], message: str, key: bool = False) -> str:
        where = "alerting" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc)
        probe = ("alerting", *loc)
        while probe:
            hit = (keys if key else nodes).get(probe) or nodes.get(probe)
            if hit is not None:
                return f"{file}:{hit.start_mark.line + 1}:{hit.start_mark.column + 1}: {where}: {message}"
            probe, key = probe[:-1], False
        return f"{file}:1:1: {where}: {message}"

    try:
        config = AlertingConfig.model_validate(raw)
    except ValidationError as e:
        errors = []
        for err in e.errors():
            loc = tuple(err["loc"])
            if err["type"] == "extra_forbidden":
                errors.append(at(loc, f"unknown key {loc[-1]!r}", key=True))
            elif err["type"] == "missing":
                errors.append(at(loc, "required field missing"))
            else:
                errors.append(at(loc, err["msg"].removeprefix("Value error, ")))
        return None, sorted(set(errors), key=_position)
    errors = []
    durations: list[tuple[tuple[Any, ...], str]] = [
        (("repeat_interval",), config.repeat_interval),
        *((("delivery", k), getattr(config.delivery, k)) for k in ("backoff", "max_backoff", "give_up_after")),
    ]
    if config.alertmanager is not None:
        am = config.alertmanager
        durations += [(("alertmanager", "resend"), am.resend), (("alertmanager", "timeout"), am.timeout)]
        for i, url in enumerate(am.urls):
            if not re.match(r"^https?://[^/\s]+", url):
                errors.append(at(("alertmanager", "urls", i), f"not an http(s) URL: {url!r}"))
    for loc, value in durations:
        try:
            parse_duration(value)
        except ValueError as err:
            errors.append(at(loc, str(err)))
    names = [r.name for r in config.receivers]
    for i, r in enumerate(config.receivers):
        if names.count(r.name) > 1 and names.index(r.name) != i:
            errors.append(at(("receivers", i, "name"), f"duplicate receiver name {r.name!r}"))
        for j, url in enumerate(r.urls):
            problem = _url_problem(url)
            if problem:
                errors.append(at(("receivers", i, "urls", j), problem))
    known = ", ".join(names) or "(none)"
    for i, route in enumerate(config.routes):
        if route.receiver not in names:
            errors.append(at(("routes", i, "receiver"), f"unknown receiver {route.receiver!r}; receivers: {known}"))
        for label, pattern in route.match_re.items():
            try:
                re.compile(pattern)
            except re.error as err:
                errors.append(at(("routes", i, "match_re", label), f"bad regular expression: {err}"))
    if config.default_receiver is not None and config.default_receiver not in names:
        errors.append(at(("default_receiver",), f"unknown receiver {config.default_receiver!r}; receivers: {known}"))
    if config.routes and config.default_receiver is None and not config.alertmanager:
        pass  # alerts no route matches go nowhere but the history: allowed, said in docs/alerting.md
    return (None if errors else config), sorted(set(errors), key=_position)


def _url_problem(url: str) -> str | None:
    """Why apprise cannot use ``url`` (None when it can)."""
    try:
        expanded = expand_env(url)
    except KeyError as e:
        return f"environment variable {e.args[0]} is not set (the URL reads ${{{e.args[0]}}})"
    import apprise

    if not apprise.Apprise().add(expanded):
        return f"not an apprise URL apprise can use: {url!r} (see https://github.com/caronc/apprise/wiki)"
    return None


def _walk(
    node: yaml.Node | None, path: tuple[Any, ...], nodes: dict[Any, yaml.Node], keys: dict[Any, yaml.Node]
) -> None:
    if node is None:
        return
    nodes[path] = node
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            keys[path + (k.value,)] = k
            _walk(v, path + (k.value,), nodes, keys)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _walk(v, path + (i,), nodes, keys)


def _position(error: str) -> tuple[int, int, str]:
    m = re.match(r"^.*?:(\d+):(\d+): ", error)
    return (int(m.group(1)), int(m.group(2)), error) if m else (0, 0, error)
