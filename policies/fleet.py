"""Which policy watches which model: exact names, globs, attribute values, and one precedence.

A policy selects its models with ``model: churn`` (one), or ``models:`` (a fleet): names and
globs (``fnmatch``: ``*``, ``?``, ``[ab]``), optionally narrowed by ``where:`` (event attribute →
value or list of values). When several policies match a model, the **most specific** one watches
it, compared in this order:

1. an exact name beats any glob (``shop-flagship`` beats ``shop-*``);
2. a glob with more literal characters beats one with fewer (``shop-eu-*`` beats ``shop-*``);
3. a policy with more ``where:`` attributes beats one with fewer.

Why a precedence and not a refusal of every overlap: the common fleet is a default policy for
many models plus a hand-tuned one for a few (CSS selectors and nginx locations work the same way),
and refusing overlaps would force listing every other model by name. What is still refused:
two policies that select a model *equally* specifically. When that is visible in the files (the
same name or glob with the same ``where:``), loading fails with both positions; otherwise (two
different globs of equal weight, such as ``ab*`` and ``*cd`` for ``abcd``) the model is not
watched, and the daemon logs both policies and counts it as ``ambiguous``.

>>> import tempfile, pathlib
>>> from driftwarden.policies.loader import load_policy
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> _ = (d / "fleet.yaml").write_text("version: 1\\nmodels: 'shop-*'\\n"
...     "monitors:\\n  e: {kind: adwin, series: error}\\n"
...     "overrides:\\n  'shop-eu-*': {e: {delta: 0.01}}\\n")
>>> _ = (d / "flagship.yaml").write_text("version: 1\\nmodel: shop-flagship\\n")
>>> fleet = Fleet([load_policy(d / "fleet.yaml"), load_policy(d / "flagship.yaml")])
>>> [(m, fleet.route(m).policy.path.name) for m in ("shop-1", "shop-flagship")]
[('shop-1', 'fleet.yaml'), ('shop-flagship', 'flagship.yaml')]
>>> fleet.route("bank-1").reason
'no policy selects it'
>>> bound = fleet.bind(fleet.route("shop-eu-2").policy, "shop-eu-2")
>>> plain = fleet.bind(fleet.route("shop-1").policy, "shop-1")
>>> bound.model, bound.spec.monitors["e"].delta, plain.spec.monitors["e"].delta  # None: adwin's default
('shop-eu-2', 0.01, None)
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from driftwarden.policies.loader import LoadedPolicy, PolicyError, PolicyLoadError
from driftwarden.policies.schema import MonitorSpec
from pydantic import TypeAdapter

_MONITOR: TypeAdapter[Any] = TypeAdapter(MonitorSpec)
_CLASS = re.compile(r"\[[^\]]*\]")

Rank = tuple[int, int, int]


def is_glob(pattern: str) -> bool:
    """Whether ``pattern`` has a wildcard (``*``, ``?`` or ``[...]``).

    >>> is_glob("shop-*"), is_glob("churn")
    (True, False)
    """
    return any(c in pattern for c in "*?[")


def specificity(pattern: str) -> tuple[int, int]:
    """(exact name?, literal characters): larger is more specific. A ``[...]`` class counts as
    one wildcard character.

    >>> specificity("churn"), specificity("shop-eu-*"), specificity("shop-*"), specificity("*")
    ((1, 5), (0, 8), (0, 5), (0, 0))
    """
    if not is_glob(pattern):
        return 1, len(pattern)
    return 0, sum(1 for c in _CLASS.sub("?", pattern) if c not in "*?")


def attributes_match(where: Mapping[str, Any], attributes: Mapping[str, Any] | None) -> bool:
    """Whether an event's attributes have every value ``where`` asks for (values compare as text).

    >>> attributes_match({"team": ["a", "b"]}, {"team": "b", "x": 1}), attributes_match({"team": "a"}, {})
    (True, False)
    """
    if not where:
        return True
    if not attributes:
        return False
    for key, wanted in where.items():
        if key not in attributes:
            return False
        allowed = wanted if isinstance(wanted, list) else [wanted]
        if _text(attributes[key]) not in {_text(v) for v in allowed}:
            return False
    return True


def _text(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


@dataclass(frozen=True)
class Route:
    """The outcome of routing one model: ``policy`` (the file's, not yet bound) or why not."""

    policy: LoadedPolicy | None
    reason: str = ""
    pattern: str = ""
    """The name or glob that selected the model."""
    rivals: tuple[LoadedPolicy, ...] = ()
    """With ``reason`` ambiguous: the policies that tie."""

    @property
    def ambiguous(self) -> bool:
        return bool(self.rivals)


class Fleet:
    """The policies of one daemon, and which of them watches each model.

    Raises :class:`PolicyLoadError` (with the positions of both selectors) when two policies
    select a model equally specifically in a way visible in the files.
    """

    def __init__(self, policies: Iterable[LoadedPolicy]) -> None:
        self.policies = list(policies)
        errors = conflicts(self.policies)
        if errors:
            raise PolicyLoadError(errors)
        self.uses_where = any(p.spec.where for p in self.policies)
        """Whether any policy selects by attributes (routing a new model then reads its events)."""
        self._exact: dict[str, list[LoadedPolicy]] = {}
        self._globs: list[tuple[str, LoadedPolicy]] = []
        for p in self.policies:
            for pattern in p.spec.selectors():
                if is_glob(pattern):
                    self._globs.append((pattern, p))
                else:
                    self._exact.setdefault(pattern, []).append(p)

    def eager(self) -> list[str]:
        """Models a daemon starts pipelines for at once: exact names whose policy needs no attribute
        (and wins over every other policy naming them so)."""
        out = []
        for name in self._exact:
            route = self.route(name)
            if route.policy is not None and not route.policy.spec.where:
                out.append(name)
        return out

    def route(self, model: str, attributes: Mapping[str, Any] | None = None) -> Route:
        """The policy that watches ``model`` given one event's ``attributes`` (None: ignore
        ``where:``), by the precedence of the module docstring."""
        ranked: list[tuple[Rank, str, LoadedPolicy]] = []
        for p in self._exact.get(model, ()):
            ranked.append(((*specificity(model), len(p.spec.where)), model, p))
        for pattern, p in self._globs:
            if fnmatch.fnmatchcase(model, pattern):
                ranked.append(((*specificity(pattern), len(p.spec.where)), pattern, p))
        if not ranked:
            return Route(None, "no policy selects it")
        ranked = [r for r in ranked if attributes is None or attributes_match(r[2].spec.where, attributes)]
        if not ranked:
            return Route(None, "its attributes match no policy's 'where'")
        ranked.sort(key=lambda r: r[0], reverse=True)
        best = ranked[0]
        ties = tuple({id(r[2]): r[2] for r in ranked if r[0] == best[0]}.values())
        if len(ties) > 1:
            names = ", ".join(str(p.path) for p in ties)
            return Route(None, f"policies {names} select it equally specifically", best[1], ties)
        return Route(best[2], "", best[1])

    def bind(self, policy: LoadedPolicy, model: str) -> LoadedPolicy:
        """``policy`` as a single-model policy for ``model``: its monitors with the ``overrides`` whose
        patterns match ``model`` applied (less specific first, so the more specific wins key by key).
        Everything downstream (pipeline, engine, actions, store, metrics) sees a plain policy."""
        return bind(policy, model)


def bind(policy: LoadedPolicy, model: str) -> LoadedPolicy:
    """See :meth:`Fleet.bind`."""
    spec = policy.spec
    if spec.model == model and not spec.overrides:
        return policy
    monitors = dict(spec.monitors)
    patterns = sorted((p for p in spec.overrides if fnmatch.fnmatchcase(model, p)), key=specificity)
    for pattern in patterns:
        for name, params in spec.overrides[pattern].items():
            base = monitors[name].model_dump(by_alias=True, exclude_unset=True)
            monitors[name] = _MONITOR.validate_python({**base, **params, "kind": base["kind"]})
    bound = spec.model_copy(update={"model": model, "models": None, "monitors": monitors})
    # Without overrides the monitors and rules are the fleet policy's: so are their digests (shared, made once).
    return dataclasses.replace(policy, spec=bound, _digests={} if patterns else policy._digests)


def conflicts(policies: Sequence[LoadedPolicy]) -> list[PolicyError]:
    """Two policies with the same name or glob and the same ``where:``: each one's position."""
    seen: dict[tuple[str, str], LoadedPolicy] = {}
    errors = []
    for p in policies:
        for pattern in p.spec.selectors():
            key = (pattern, repr(sorted(p.spec.where.items())))
            other = seen.get(key)
            if other is None:
                seen[key] = p
                continue
            if other is p:
                continue
            what = "model" if not is_glob(pattern) else "glob"
            errors.append(
                _at(other, pattern, f"{what} {pattern!r} is also selected by {p.path} ({_place(p, pattern)})")
            )
            errors.append(
                _at(p, pattern, f"{what} {pattern!r} is also selected by {other.path} ({_place(other, pattern)})")
            )
    return errors


def _place(p: LoadedPolicy, pattern: str) -> str:
    line, col = p.places.get(pattern, (1, 1))
    return f"line {line}, column {col}"


def _at(p: LoadedPolicy, pattern: str, message: str) -> PolicyError:
    line, col = p.places.get(pattern, (1, 1))
    where = "model" if p.spec.model is not None else "models"
    return PolicyError(str(p.path), line, col, where, message + "; give one of them a 'where:' or remove one")
