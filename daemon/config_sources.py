"""Where the daemon's settings come from, and in which order: command line > environment > config file > defaults.

- ``DRIFTWARDEN_*`` variables set any setting; ``__`` separates nested keys (``DRIFTWARDEN_BATCH_SIZE=500``,
  ``DRIFTWARDEN_SOURCE__BOOTSTRAP=kafka:9092``, ``DRIFTWARDEN_SOURCE__SETTINGS__SASL_PLAIN_PASSWORD=...``).
  A variable whose first part names no setting (``DRIFTWARDEN_REQUIRE_KAFKA``, ``DRIFTWARDEN_TOKEN``) is not a
  setting and is left to whoever reads it.
- ``${NAME}`` and ``${NAME:-default}`` in the config file's strings are replaced by environment variables (``$$``
  is a literal ``$``); a variable that is not set and has no default is an error naming it.
- A key ``<name>_file`` (where the model has no field of that name) is replaced by ``<name>`` holding the file's
  contents without the trailing newline: ``sasl_plain_password_file: /run/secrets/kafka-password``, or
  ``DRIFTWARDEN_SOURCE__SETTINGS__SASL_PLAIN_PASSWORD_FILE``. That is how secrets stay out of the config file.

Values from the environment are strings; pydantic converts them to the field's type. A list field takes
``a,b`` or a YAML flow list (``[a, b]``); a pass-through setting (``source.settings``) reads the value as a YAML
scalar (``10000`` is a number), except a secret (a key naming a password, secret or token), which stays a string.

>>> env = {"DRIFTWARDEN_BATCH_SIZE": "500", "DRIFTWARDEN_SOURCE__TOPICS": "a,b", "DRIFTWARDEN_REQUIRE_KAFKA": "1"}
>>> layer = environment_layer(env, {"batch_size": int, "source": {"topics": list}})
>>> layer.values
{'batch_size': '500', 'source': {'topics': ['a', 'b']}}
>>> layer.origins[("source", "topics")]
'DRIFTWARDEN_SOURCE__TOPICS'
>>> interpolate({"p": "${HOME_DIR}/x", "q": "$${literal}"}, {"HOME_DIR": "/h"}, "c.yaml")
{'p': '/h/x', 'q': '${literal}'}
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PREFIX = "DRIFTWARDEN_"
NESTED = "__"
FILE_SUFFIX = "_file"
SECRET_WORDS = ("password", "secret", "token")
"""A key containing one of these holds a secret: never parsed, never logged (see :func:`redact`)."""

REDACTED = "***"

MAX_SECRET_FILE_BYTES = 64 * 1024
"""A secret file larger than this is a mistake (a wrong path), not a password: refused before it is read whole."""

_REFERENCE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

Shape = Mapping[str, Any]
"""The settings' shape: per key, a nested :data:`Shape` for a section, ``list`` for a list field, ``dict`` for a
pass-through mapping, any other type for a scalar. :func:`shape_of` builds it from the pydantic model."""


class ConfigError(ValueError):
    """A setting that cannot be read; the message names the setting and where it came from, never its value."""


@dataclass
class Layer:
    """Settings from one place: nested ``values`` and, per key path, the place a value came from."""

    values: dict[str, Any] = field(default_factory=dict)
    origins: dict[tuple[str, ...], str] = field(default_factory=dict)


def is_secret(key: str) -> bool:
    """>>> is_secret("sasl_plain_password"), is_secret("ssl_cafile")
    (True, False)"""
    low = key.lower()
    return any(word in low for word in SECRET_WORDS)


def redact(value: Any) -> Any:
    """``value`` with every secret replaced by ``***``, for logs and reprs.

    >>> redact({"sasl_plain_username": "dw", "sasl_plain_password": "hunter2", "nested": {"token": "t"}})
    {'sasl_plain_username': 'dw', 'sasl_plain_password': '***', 'nested': {'token': '***'}}
    """
    if isinstance(value, Mapping):
        return {k: REDACTED if is_secret(str(k)) and v is not None else redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def interpolate(value: Any, env: Mapping[str, str], where: str, path: tuple[str, ...] = ()) -> Any:
    """``value`` (parsed YAML) with ``${NAME}`` / ``${NAME:-default}`` in its strings taken from ``env``."""
    if isinstance(value, dict):
        return {k: interpolate(v, env, where, (*path, str(k))) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env, where, (*path, str(i))) for i, v in enumerate(value)]
    if not isinstance(value, str) or "$" not in value:
        return value

    def replace(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name, default = m.group(1), m.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise ConfigError(
            f"{where}: {'.'.join(path)}: ${{{name}}} is not set (give it a value, or ${{{name}:-default}})"
        )

    return _REFERENCE.sub(replace, value)


def environment_layer(env: Mapping[str, str], shape: Shape) -> Layer:
    """The settings named by ``DRIFTWARDEN_*`` variables in ``env`` (values still strings, lists split)."""
    layer = Layer()
    for name in sorted(env):
        if not name.startswith(PREFIX) or len(name) == len(PREFIX):
            continue
        path = tuple(part.lower() for part in name[len(PREFIX) :].split(NESTED))
        head = path[0].removesuffix(FILE_SUFFIX) if len(path) == 1 else path[0]
        if head not in shape or any(not part for part in path):
            continue
        kind = _kind(shape, path)
        raw = env[name]
        if kind is list and not path[-1].endswith(FILE_SUFFIX):
            value: Any = _as_list(raw, name)
        elif kind is Any and not is_secret(path[-1]) and not path[-1].endswith(FILE_SUFFIX):
            value = _as_scalar(raw)
        else:
            value = raw
        _put(layer.values, path, value, name)
        layer.origins[path] = name
    return layer


def merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``top``, mappings merged key by key (``top`` wins), everything else replaced.

    >>> merge({"source": {"kind": "kafka", "topics": ["a"]}, "batch_size": 1}, {"source": {"topics": ["b"]}})
    {'source': {'kind': 'kafka', 'topics': ['b']}, 'batch_size': 1}
    """
    out = dict(base)
    for k, v in top.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = merge(dict(out[k]), v)
        else:
            out[k] = v
    return out


def read_files(
    values: dict[str, Any], shape: Shape | None, origins: Mapping[tuple[str, ...], str], path: tuple[str, ...] = ()
) -> dict[str, Any]:
    """``values`` with every ``<name>_file`` key the shape does not know replaced by ``<name>``: the file's text."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        here = (*path, key)
        known = shape is not None and key in shape
        if key.endswith(FILE_SUFFIX) and not known and isinstance(value, str | Path):
            target = key.removesuffix(FILE_SUFFIX)
            if target in values:
                raise ConfigError(f"{_name(here, origins)}: give {target} or {key}, not both")
            out[target] = _read_secret(Path(value), here, origins)
            continue
        sub = shape.get(key) if shape is not None else None
        if isinstance(value, dict):
            out[key] = read_files(value, sub if isinstance(sub, Mapping) else None, origins, here)
        else:
            out[key] = value
    return out


def shape_of(model: type[Any]) -> dict[str, Any]:
    """The :data:`Shape` of a pydantic model: sections recursively, ``list``, ``Any`` (pass-through) or the type."""
    from pydantic import BaseModel

    shape: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        annotation = info.annotation
        origin = getattr(annotation, "__origin__", None)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            shape[name] = shape_of(annotation)
        elif origin is list:
            shape[name] = list
        elif origin is dict:
            shape[name] = {"*": Any}
        else:
            shape[name] = annotation
    return shape


def _kind(shape: Shape, path: tuple[str, ...]) -> Any:
    node: Any = shape
    for part in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(part, node.get("*"))
    return node


def _as_list(raw: str, name: str) -> list[Any]:
    text = raw.strip()
    if text.startswith("["):
        try:
            parsed = yaml.safe_load(text)
        except yaml.YAMLError:
            raise ConfigError(f"{name}: not a list (write a,b or [a, b])") from None
        if not isinstance(parsed, list):
            raise ConfigError(f"{name}: not a list (write a,b or [a, b])")
        return parsed
    return [item.strip() for item in text.split(",") if item.strip()]


def _as_scalar(raw: str) -> Any:
    try:
        parsed = yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw
    return parsed if isinstance(parsed, str | int | float | bool) else raw


def _put(values: dict[str, Any], path: tuple[str, ...], value: Any, name: str) -> None:
    node = values
    for part in path[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{name}: {'.'.join(path[:-1])} is not a section")
        node = child
    node[path[-1]] = value


def _name(path: tuple[str, ...], origins: Mapping[tuple[str, ...], str]) -> str:
    dotted = ".".join(path)
    return f"{dotted} (from {origins[path]})" if path in origins else dotted


def _read_secret(path: Path, here: tuple[str, ...], origins: Mapping[tuple[str, ...], str]) -> str:
    try:
        size = path.stat().st_size
        if size > MAX_SECRET_FILE_BYTES:
            raise ConfigError(f"{_name(here, origins)}: {path} has {size} bytes, more than a secret")
        return path.read_text().rstrip("\r\n")
    except OSError as e:
        raise ConfigError(f"{_name(here, origins)}: cannot read {path}: {e.strerror}") from None
