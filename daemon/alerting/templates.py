"""Annotation templates: ``str.format`` fields over what the triggering monitor said.

A template names fields in braces, with an optional format spec: ``{value:.3f}``. The fields:
``alertname`` (the rule), ``model``, ``severity``, ``monitor`` (the first monitor the rule's
condition names), that monitor's ``value``, ``threshold``, ``p_value``, ``share_drifted`` and
``drifted`` (the drifted features, comma separated), ``condition`` (the rule's ``when``), and
``monitors`` (every monitor's latest signal: ``{monitors[errors][value]}``). A field that is
missing renders as ``?``; a template that fails renders as written: an annotation never stops
an alert.

>>> ctx = context("concept-drift", "credit", "critical", "errors.drift", ["errors"],
...               {"errors": {"value": 0.31, "threshold": 0.002, "drift": True}})
>>> render("{monitor} = {value:.2f} (threshold {threshold}) on {model}", ctx)
'errors = 0.31 (threshold 0.002) on credit'
>>> render("{nope:.2f} {monitor:.1f}", ctx)   # an unknown field; a spec that does not fit the value
'? errors'
"""

from __future__ import annotations

import logging
import math
import string
from collections.abc import Mapping, Sequence
from typing import Any

log = logging.getLogger("driftwarden.alerting")

MISSING = "?"

DEFAULT_SUMMARY = "{alertname} on {model}: {monitor} {value} (threshold {threshold})"
"""The summary when a rule writes none: which monitor, its value, its threshold."""

DEFAULT_DESCRIPTION = (
    "Rule {alertname} of model {model} fired ({condition}): {monitor} is {value} against a threshold of "
    "{threshold}; p-value {p_value}; drifted features: {drifted}."
)
"""The description when a rule writes none: the numbers people ask for first."""

MAX_FEATURES = 10
"""Drifted features named in ``drifted`` before "and N more": a message stays readable."""


def _plain(value: Any) -> Any:
    """Numbers rounded for people (4 significant digits), the rest as is."""
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return float(f"{value:.4g}")
    return value


def context(
    alertname: str,
    model: str,
    severity: str,
    condition: str,
    monitors: Sequence[str],
    latest: Mapping[str, Mapping[str, Any]],
) -> dict[str, Any]:
    """The fields of a template for a rule whose condition names ``monitors``."""
    primary = next((m for m in monitors if latest.get(m, {}).get("ready", True) and m in latest), None)
    primary = primary or (monitors[0] if monitors else "")
    signal = dict(latest.get(primary, {}))
    features = signal.get("features")
    drifted = sorted(k for k, v in features.items() if isinstance(v, Mapping) and v.get("drift")) if features else []
    named = ", ".join(drifted[:MAX_FEATURES]) + (
        f" and {len(drifted) - MAX_FEATURES} more" if len(drifted) > MAX_FEATURES else ""
    )
    out: dict[str, Any] = {
        "alertname": alertname,
        "model": model,
        "severity": severity,
        "condition": condition,
        "monitor": primary,
        "value": _plain(signal.get("value")),
        "threshold": _plain(signal.get("threshold")),
        "p_value": _plain(signal.get("p_value")),
        "share_drifted": _plain(signal.get("share_drifted")),
        "drifted": named or "none",
        "monitors": {m: {k: _plain(v) for k, v in latest[m].items()} for m in monitors if m in latest},
    }
    return out


class _Fields(string.Formatter):
    def get_value(self, key: int | str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        return kwargs.get(str(key), MISSING)

    def get_field(self, field_name: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        try:
            return super().get_field(field_name, args, kwargs)
        except (KeyError, IndexError, AttributeError, TypeError):
            return MISSING, field_name

    def format_field(self, value: Any, format_spec: str) -> Any:
        if value is None:
            return MISSING
        try:
            return format(value, format_spec)
        except (ValueError, TypeError):
            return format(value, "") if value is not MISSING else MISSING


_FORMATTER = _Fields()


def render(template: str, fields: Mapping[str, Any]) -> str:
    """``template`` with ``fields`` filled in (see the module docstring)."""
    try:
        return _FORMATTER.vformat(template, (), fields)
    except (ValueError, TypeError) as e:
        log.warning("annotation template %r: %s; sent as written", template, e)
        return template


def render_annotations(templates: Mapping[str, str], fields: Mapping[str, Any]) -> dict[str, str]:
    """Every annotation rendered, with the default ``summary`` and ``description`` when the rule
    wrote none (``runbook_url`` and any other key pass through the same templating)."""
    merged = {"summary": DEFAULT_SUMMARY, "description": DEFAULT_DESCRIPTION, **templates}
    return {k: render(v, fields) for k, v in merged.items()}
