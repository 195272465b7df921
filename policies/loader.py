"""Load a policy file: every error collected, each as ``file:line:col: field: message``.

Loading is in two passes, and both always run, so one broken part never hides the errors of
another: the schema (pydantic: unknown keys, types, required fields), then the meaning
(conditions compiled and their names resolved, durations, cron strings, actions, monitor
parameters). Parts the first pass rejected are checked by the second with their unknown keys
dropped, and names of rejected monitors and actions still count as defined (no cascades).

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> _ = (d / "p.yaml").write_text("version: 1\\nmodel: m\\nmonitors:\\n  e: {kind: adwin, series: error}\\n"
...                          "rules:\\n  - {name: r, when: 'e.drift && x.value > 1', do: alert, cooldown: 6 hours}\\n")
>>> for e in check_policy(d / "p.yaml"): print(e.short())
p.yaml:6:33: rules[0].when: unknown name 'x'; monitors: e; also available: events, labels, dead_letters, model, actions
p.yaml:6:68: rules[0].cooldown: not a duration: '6 hours' (use a number and a unit: 30s, 10m, 6h, 1d, 1w)
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from driftwarden.detectors.registry import MONITORS, build
from driftwarden.policies import safe_yaml
from driftwarden.policies.conditions import CEL_BUILTINS, FUNCTIONS, Condition, ConditionError
from driftwarden.policies.durations import parse_duration, parse_for, parse_resolve_after
from driftwarden.policies.rules import RuleTiming
from driftwarden.policies.safe_yaml import MAX_POLICY_BYTES
from driftwarden.policies.schema import (
    ACTION_TYPES,
    BUILTIN_ACTIONS,
    MONITOR_MODELS,
    Action,
    MonitorBase,
    MonitorSpec,
    Policy,
    Rule,
    WindowSpec,
)
from pydantic import BaseModel, TypeAdapter, ValidationError

CONTEXT_NAMES = ("events", "labels", "dead_letters", "model", "actions")
"""Names every condition may read besides the monitors
(see :meth:`driftwarden.policies.engine.PolicyEngine.context`)."""

GATE_NAMES = ("candidate", "champion")
ROLLBACK_NAMES = ("live", "champion", "candidate")

CEL_RESERVED = frozenset(
    "true false null in as break const continue else for function if import let loop package namespace "
    "return var void while".split()
)
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_COMPREHENSION = re.compile(r"\.\s*(?:all|exists|exists_one|map|filter)\s*\(\s*([A-Za-z_]\w*)\s*,")
_HELPER_CALL = re.compile(r"\b(fired_within|count)\s*\(([^()]*)\)")
_STRING = re.compile(r"""^\s*(?:"([^"]*)"|'([^']*)')\s*$""")

Path_ = tuple[str | int, ...]

HINT_CUTOFF = 0.7
"""Similarity (difflib ratio) from which 'did you mean' suggests a name: typos, not unrelated words."""
_MONITOR = TypeAdapter(MonitorSpec)


@dataclass(frozen=True, slots=True)
class PolicyError:
    file: str
    line: int
    col: int
    where: str
    message: str

    def __str__(self) -> str:
        where = f"{self.where}: " if self.where else ""
        return f"{self.file}:{self.line}:{self.col}: {where}{self.message}"

    def short(self) -> str:
        return str(self).replace(self.file, Path(self.file).name, 1)


class PolicyLoadError(ValueError):
    """A policy that does not load; ``errors`` holds every problem found."""

    def __init__(self, errors: list[PolicyError]) -> None:
        super().__init__("\n".join(str(e) for e in errors))
        self.errors = errors


@dataclass(frozen=True)
class LoadedPolicy:
    """A validated policy with every condition compiled."""

    path: Path
    spec: Policy
    digest: str
    when: dict[str, Condition] = field(default_factory=dict)
    require: dict[str, Condition] = field(default_factory=dict)
    timing: dict[str, RuleTiming] = field(default_factory=dict)
    inhibitors: dict[str, frozenset[str]] = field(default_factory=dict)
    """Per rule: the action types whose run in progress mutes it."""
    promote_if: dict[str, Condition] = field(default_factory=dict)
    rollback_if: dict[str, Condition] = field(default_factory=dict)
    triggers: dict[str, frozenset[str]] = field(default_factory=dict)
    """Per rule: the monitors whose signals make it evaluate (named in 'when', also inside helpers)."""
    reference_digest: str | None = None
    rule_lines: dict[str, int] = field(default_factory=dict)
    """Per rule: the line of the file where it starts (for rule-evaluation errors)."""
    places: dict[str, tuple[int, int]] = field(default_factory=dict, compare=False)
    """(line, column) of each name or glob of ``model``/``models`` (for errors across policies)."""
    _digests: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def model(self) -> str:
        """The model this policy watches; ``""`` for a fleet policy not yet bound to one
        (:func:`driftwarden.policies.fleet.bind`)."""
        return self.spec.model or ""

    def monitor_definition(self, name: str) -> str:
        """A digest of monitor ``name``'s definition (and of the reference data it compares with):
        its state carries over a reload or restart only when this is unchanged."""
        if f"monitor:{name}" in self._digests:
            return self._digests[f"monitor:{name}"]
        spec = self.spec.monitors[name]
        text = json.dumps(
            [spec.definition(), self.reference_digest if uses_policy_reference(spec) else None],
            sort_keys=True,
            default=str,
        )
        digest = self._digests[f"monitor:{name}"] = hashlib.sha256(text.encode()).hexdigest()[:16]
        return digest

    def rule_definition(self, name: str) -> str:
        """A digest of what makes a rule pending or firing (when, require, schedule, for, keep_firing_for)."""
        if f"rule:{name}" in self._digests:
            return self._digests[f"rule:{name}"]
        rule = next(r for r in self.spec.rules if r.name == name)
        text = json.dumps([rule.when, rule.require, rule.schedule, rule.for_, rule.keep_firing_for])
        digest = self._digests[f"rule:{name}"] = hashlib.sha256(text.encode()).hexdigest()[:16]
        return digest


def load_policy(path: str | Path) -> LoadedPolicy:
    """The policy at ``path``, or :class:`PolicyLoadError` listing every error."""
    loaded, errors = load_text(Path(path))
    if errors or loaded is None:
        raise PolicyLoadError(errors)
    return loaded


def check_policy(path: str | Path) -> list[PolicyError]:
    """Every error of the policy at ``path`` (empty when it is valid)."""
    return load_text(Path(path))[1]


def read_policy_text(path: Path) -> tuple[str | None, list[PolicyError]]:
    """The file's text, read within :data:`~driftwarden.policies.safe_yaml.MAX_POLICY_BYTES`, or why it cannot be."""
    file = str(path)
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_POLICY_BYTES + 1)
    except OSError as e:
        return None, [PolicyError(file, 1, 1, "", f"cannot read: {e.strerror or e}")]
    if len(raw) > MAX_POLICY_BYTES:
        return None, [
            PolicyError(file, 1, 1, "", f"the file is over the limit of {MAX_POLICY_BYTES} bytes for a policy")
        ]
    try:
        return raw.decode("utf-8"), []
    except UnicodeDecodeError as e:
        before = raw[: e.start]
        line = before.count(b"\n") + 1
        col = len(before) - (before.rfind(b"\n") + 1) + 1
        return None, [
            PolicyError(file, line, col, "", f"not UTF-8: byte 0x{raw[e.start]:02x} cannot start a character")
        ]


def load_text(path: Path, text: str | None = None) -> tuple[LoadedPolicy | None, list[PolicyError]]:
    """The policy in ``text`` (read from ``path`` when None) and its errors; exactly one is empty/None.

    It never raises: whatever the input, the answer is a policy or errors with positions."""
    file = str(path)
    if text is None:
        text, errors = read_policy_text(path)
        if text is None:
            return None, errors
    try:
        return _load_text(path, file, text)
    except Exception as e:  # noqa: BLE001 - the loader's promise: a position, never a traceback
        return None, [PolicyError(file, 1, 1, "", f"cannot load this policy: {type(e).__name__}: {str(e)[:200]}")]


def _load_text(path: Path, file: str, text: str) -> tuple[LoadedPolicy | None, list[PolicyError]]:
    node, data, problems = safe_yaml.load(text)
    if problems:
        return None, [PolicyError(file, line, col, "", message) for line, col, message in problems]
    positions = _Positions(file, text)
    if node is not None:
        positions.walk(node, ())
    if not isinstance(data, dict):
        return None, [
            PolicyError(file, 1, 1, "", "a policy is a YAML mapping (version, model, monitors, rules, actions)")
        ]
    errors = [
        positions.error(
            (k,), "YAML reads the bare key 'on' as true; write 'series:' (monitors) or 'when:' (rules)", key=True
        )
        for k in data
        if k is True
    ]
    errors += _nested_on_keys(data, (), positions)
    if errors:
        return None, errors
    spec: Policy | None
    try:
        spec = Policy.model_validate(data)
    except ValidationError as e:
        spec = None
        errors = _pydantic_errors(e, positions, data)
    parts = _Parts.of(spec, data, errors)
    reference_digest = None
    if spec is not None and spec.reference is not None:
        reference_digest = _file_digest(_reference_path(path, spec.reference.path))
    loaded = LoadedPolicy(
        path=path,
        spec=spec,  # type: ignore[arg-type]
        digest=hashlib.sha256(text.encode()).hexdigest(),
        reference_digest=reference_digest,
    )
    errors += _semantic_errors(parts, loaded, positions, path)
    errors += _fleet_errors(data, parts, positions)
    if spec is not None:
        loaded.places.update(_selector_places(spec, positions))
    errors = sorted(dict.fromkeys(errors), key=lambda e: (e.line, e.col, e.where, e.message))
    return (None if errors or spec is None else loaded), errors


def _selector_places(spec: Policy, pos: _Positions) -> dict[str, tuple[int, int]]:
    if spec.model is not None:
        paths: list[tuple[str, Path_]] = [(spec.model, ("model",))]
    elif isinstance(spec.models, str):
        paths = [(spec.models, ("models",))]
    else:
        paths = [(m, ("models", i)) for i, m in enumerate(spec.models or [])]
    out: dict[str, tuple[int, int]] = {}
    for pattern, at in paths:
        e = pos.error(at, "")
        out.setdefault(pattern, (e.line, e.col))
    return out


def _fleet_errors(data: dict[Any, Any], parts: _Parts, pos: _Positions) -> list[PolicyError]:
    """``models``/``where``/``overrides``: names not empty, overrides naming known monitors with
    parameters their kind accepts (checked on the monitor as overridden)."""
    errors: list[PolicyError] = []
    models = data.get("models")
    for i, m in enumerate(models if isinstance(models, list) else [models] if models is not None else []):
        if isinstance(m, str) and not m.strip():
            errors.append(pos.error(("models", i) if isinstance(models, list) else ("models",), "empty model name"))
    overrides = data.get("overrides")
    if not isinstance(overrides, dict):
        return errors
    raw_monitors = _mapping(data.get("monitors"))
    for pattern, by_monitor in overrides.items():
        if not isinstance(by_monitor, dict):
            continue
        for name, params in by_monitor.items():
            at: Path_ = ("overrides", pattern, name)
            if name not in raw_monitors:
                names = sorted(str(k) for k in raw_monitors)
                errors.append(
                    pos.error(
                        at,
                        f"unknown monitor {name!r}; {_hint(str(name), names)}monitors: {', '.join(names) or '(none)'}",
                        key=True,
                    )
                )
                continue
            if not isinstance(params, dict):
                continue
            if "kind" in params:
                errors.append(pos.error(at + ("kind",), "an override cannot change a monitor's kind", key=True))
                continue
            base = parts.monitors.get(str(name))
            if base is None:
                continue  # the monitor itself is refused: its errors are reported there
            merged = {**base.model_dump(by_alias=True, exclude_unset=True), **params, "kind": base.kind}
            try:
                monitor = _MONITOR.validate_python(merged)
            except ValidationError as e:
                for err in e.errors():
                    loc = tuple(x for x in err["loc"] if not (isinstance(x, str) and x in MONITOR_MODELS))
                    where = at + tuple(loc) if loc and loc[0] in params else at
                    msg = err["msg"].removeprefix("Value error, ")
                    if err["type"] == "extra_forbidden":
                        allowed = sorted(f.alias or n for n, f in MONITOR_MODELS[base.kind].model_fields.items())
                        msg = f"unknown parameter {loc[-1]!r} of a {base.kind} monitor; allowed: {', '.join(allowed)}"
                    errors.append(pos.error(where, msg, key=err["type"] == "extra_forbidden"))
                continue
            for problem in _monitor_errors(str(name), monitor, pos):
                named = [k for k in params if re.search(rf"\b{re.escape(str(k))}\b", problem.message)]
                errors.append(pos.error(at + (named[0],) if named else at, problem.message))
    return errors


def _reference_path(policy_path: Path, ref: str) -> Path:
    p = Path(ref)
    if p.is_absolute() or p.exists():
        return p
    return policy_path.parent / p


def _file_digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    except OSError:
        return None


@dataclass
class _Parts:
    """The parts of a policy that passed the schema, by their place in the file, and every defined name."""

    monitors: dict[str, MonitorBase]
    monitor_names: list[str]
    rules: list[tuple[int, Rule]]
    actions: dict[str, Action]
    action_names: list[str]
    reference: str | None

    @classmethod
    def of(cls, spec: Policy | None, data: dict[Any, Any], errors: list[PolicyError]) -> _Parts:
        raw_monitors = _mapping(data.get("monitors"))
        raw_actions = _mapping(data.get("actions"))
        names = sorted(str(k) for k in raw_monitors)
        action_names = sorted(str(k) for k in raw_actions)
        if spec is not None:
            return cls(
                dict(spec.monitors),
                names,
                list(enumerate(spec.rules)),
                dict(spec.actions),
                action_names,
                spec.reference.path if spec.reference else None,
            )
        pruned = _prune(data, errors)

        def valid(validate: Any, value: Any) -> Any:
            try:
                return validate(value)
            except (ValidationError, ValueError, TypeError):
                return None

        monitors = {
            str(k): m
            for k, v in _mapping(pruned.get("monitors")).items()
            if (m := valid(_MONITOR.validate_python, v)) is not None
        }
        rules_raw = pruned.get("rules")
        rules = [
            (i, r)
            for i, v in enumerate(rules_raw if isinstance(rules_raw, list) else [])
            if (r := valid(Rule.model_validate, v)) is not None
        ]
        actions = {
            str(k): a
            for k, v in _mapping(pruned.get("actions")).items()
            if (a := valid(Action.model_validate, v)) is not None
        }
        ref = pruned.get("reference")
        reference = ref.get("path") if isinstance(ref, dict) and isinstance(ref.get("path"), str) else None
        return cls(monitors, names, rules, actions, action_names, reference)


def _mapping(value: Any) -> dict[Any, Any]:
    return value if isinstance(value, dict) else {}


def _prune(data: dict[Any, Any], errors: list[PolicyError]) -> dict[Any, Any]:
    """A copy of ``data`` without the keys the schema named unknown."""
    out = copy.deepcopy(data)
    for e in errors:
        if not e.message.startswith("unknown key"):
            continue
        path = _parse_where(e.where)
        node: Any = out
        for part in path[:-1]:
            try:
                node = node[part]
            except (KeyError, IndexError, TypeError):
                node = None
                break
        if isinstance(node, dict):
            node.pop(path[-1], None)
    return out


def _parse_where(where: str) -> Path_:
    out: list[str | int] = []
    for m in re.finditer(r"([^.\[\]]+)|\[(\d+)\]", where):
        out.append(int(m.group(2)) if m.group(2) is not None else m.group(1))
    return tuple("for" if p == "for" else p for p in out)


def _nested_on_keys(data: Any, path: Path_, positions: _Positions) -> list[PolicyError]:
    out = []
    if isinstance(data, dict):
        for k, v in data.items():
            if k is True and path:
                out.append(
                    positions.error(
                        path + (True,), "YAML reads the bare key 'on' as true; write 'series:' instead", key=True
                    )
                )
            out += _nested_on_keys(v, path + (k,), positions)
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out += _nested_on_keys(v, path + (i,), positions)
    return out


def _hint(word: str, known: list[str] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(word, list(known), n=1, cutoff=HINT_CUTOFF)
    return f"did you mean {close[0]!r}? " if close else ""


def _semantic_errors(parts: _Parts, p: LoadedPolicy, pos: _Positions, path: Path) -> list[PolicyError]:
    errors: list[PolicyError] = []
    for name in parts.monitor_names:
        if not _IDENTIFIER.match(name) or name in CEL_RESERVED:
            errors.append(
                pos.error(
                    ("monitors", name),
                    f"monitor name {name!r} cannot be used in conditions; "
                    "use letters, digits and '_' (e.g. " + re.sub(r"\W", "_", name) + ")",
                    key=True,
                )
            )
        elif name in CONTEXT_NAMES or name in FUNCTIONS:
            errors.append(
                pos.error(
                    ("monitors", name),
                    f"monitor name {name!r} is taken by the condition context "
                    f"({', '.join(CONTEXT_NAMES + FUNCTIONS)}); choose another",
                    key=True,
                )
            )
    for name, m in parts.monitors.items():
        errors += _monitor_errors(name, m, pos)
    names = parts.monitor_names
    actions = sorted(set(parts.action_names) | set(BUILTIN_ACTIONS))
    seen: set[str] = set()
    for i, rule in parts.rules:
        at: Path_ = ("rules", i)
        p.rule_lines[rule.name] = pos.error(at, "").line
        if rule.name in seen:
            errors.append(pos.error(at + ("name",), f"duplicate rule name {rule.name!r}"))
        seen.add(rule.name)
        for key in ("when", "require"):
            source = getattr(rule, key)
            if source is None:
                continue
            helped: set[str] = set()
            cond = _condition(source, at + (key,), names, pos, errors, helped)
            if cond is not None:
                (p.when if key == "when" else p.require)[rule.name] = cond
                if key == "when":
                    p.triggers[rule.name] = frozenset((cond.names | helped) & set(names))
        errors += _alert_errors(rule, at, pos)
        timing = _timing(rule, at, pos, errors)
        if timing is not None:
            p.timing[rule.name] = timing
        if rule.schedule is not None:
            try:
                from apscheduler.triggers.cron import CronTrigger

                CronTrigger.from_crontab(rule.schedule)
            except ValueError as e:
                errors.append(
                    pos.error(
                        at + ("schedule",),
                        f"bad cron string {rule.schedule!r}: {e} "
                        "(five fields: minute hour day month day-of-week, e.g. '0 3 * * SUN')",
                    )
                )
            for key in ("for", "keep_firing_for"):
                if getattr(rule, "for_" if key == "for" else key) is not None:
                    errors.append(pos.error(at + (key,), f"'{key}' has no meaning on a scheduled rule; remove it"))
        if rule.do not in actions:
            errors.append(
                pos.error(
                    at + ("do",), f"unknown action {rule.do!r}; {_hint(rule.do, actions)}actions: {', '.join(actions)}"
                )
            )
        muting: set[str] = set()
        for j, name in enumerate(rule.inhibited_by):
            if name in parts.actions:
                muting.add(parts.actions[name].type or name)
            elif name in ACTION_TYPES or name in parts.action_names:
                muting.add(name)
            else:
                known = sorted(set(parts.action_names) | set(ACTION_TYPES))
                errors.append(
                    pos.error(
                        at + ("inhibited_by", j),
                        f"unknown action {name!r}; {_hint(name, known)}use an action name or type: {', '.join(known)}",
                    )
                )
        p.inhibitors[rule.name] = frozenset(muting)
    for name, action in parts.actions.items():
        at = ("actions", name)
        kind = action.type or name
        if kind not in ACTION_TYPES:
            errors.append(
                pos.error(
                    at, f"action {name!r} needs 'type' ({' or '.join(ACTION_TYPES)}): its name is not an action type"
                )
            )
        if kind == "retrain":
            if action.train is None:
                errors.append(pos.error(at, "a retrain action needs 'train' (entrypoint or command)"))
            else:
                try:
                    parse_duration(action.train.timeout)
                except ValueError as e:
                    errors.append(pos.error(at + ("train", "timeout"), str(e)))
        if action.inhibits_for is not None:
            try:
                parse_duration(action.inhibits_for)
            except ValueError as e:
                errors.append(pos.error(at + ("inhibits_for",), str(e)))
        gate = _compile(action.promote_if, at + ("promote_if",), pos, errors)
        if gate is not None:
            for u in sorted(gate.names - set(GATE_NAMES)):
                errors.append(
                    pos.error_in(
                        at + ("promote_if",),
                        gate.column_of(u),
                        f"unknown name {u!r}; use candidate.<metric> and champion.<metric>",
                    )
                )
            p.promote_if[name] = gate
        if action.rollback_if is not None:
            rb = _compile(action.rollback_if, at + ("rollback_if",), pos, errors)
            if rb is not None:
                for u in sorted(rb.names - set(ROLLBACK_NAMES)):
                    errors.append(
                        pos.error_in(
                            at + ("rollback_if",),
                            rb.column_of(u),
                            f"unknown name {u!r}; use live.<metric> and champion.<metric>",
                        )
                    )
                p.rollback_if[name] = rb
    if parts.reference is not None and not _reference_path(path, parts.reference).exists():
        errors.append(pos.error(("reference", "path"), f"reference file not found: {parts.reference}"))
    return errors


def _monitor_errors(name: str, m: MonitorBase, pos: _Positions) -> list[PolicyError]:
    at: Path_ = ("monitors", name)
    window = getattr(m, "window", None)
    if window is not None and window.time is not None:
        try:
            parse_duration(window.time)
        except ValueError as e:
            return [pos.error(at + ("window", "time"), str(e))]
    try:
        build(m.kind, monitor_params(m))
    except ValueError as e:
        message = str(e).removeprefix(f"{m.kind}: ")
        # Point at the parameter the message names first (constructor messages start with it).
        named = [(message.find(k), k) for k in m.params() if re.search(rf"\b{re.escape(k)}\b", message)]
        where = at + (min(named)[1],) if named else at
        return [pos.error(where, message)]
    return []


def uses_policy_reference(m: MonitorBase) -> bool:
    """Whether a monitor compares features with the policy's ``reference`` data: its kind takes
    ``features`` and ``reference`` (feature → values), and the entry gives no ``reference`` itself."""
    fields = type(m).model_fields
    return "features" in fields and "reference" in fields and getattr(m, "reference", None) is None


def monitor_params(m: Any) -> dict[str, Any]:
    """A monitor spec's constructor arguments, with ``window`` spelled out."""
    params = m.params()
    window: WindowSpec | None = getattr(m, "window", None)
    if window is not None:
        if window.events is not None:
            params["window_events"] = window.events
        else:
            params["window_events"] = None
            params["window_seconds"] = parse_duration(window.time or "")
    return params


def _timing(rule: Any, at: Path_, pos: _Positions, errors: list[PolicyError]) -> RuleTiming | None:
    values: dict[str, Any] = {}
    ok = True
    if rule.for_ is not None:
        try:
            values["for_windows"], values["for_seconds"] = parse_for(rule.for_)
        except ValueError as e:
            errors.append(pos.error(at + ("for",), str(e)))
            ok = False
    for key in ("cooldown", "keep_firing_for"):
        raw = getattr(rule, key)
        if raw is not None:
            try:
                values[key] = parse_duration(raw)
            except ValueError as e:
                errors.append(pos.error(at + (key,), str(e)))
                ok = False
    if not ok:
        return None
    return RuleTiming(max_per_day=rule.max_per_day, **values)


def _condition(
    source: str, at: Path_, monitors: list[str], pos: _Positions, errors: list[PolicyError], helped: set[str]
) -> Condition | None:
    """Compile a rule condition and resolve every name and function it uses; ``helped`` gets the
    monitors named inside fired_within()/count()."""
    cond = _compile(source, at, pos, errors)
    if cond is None:
        return None
    before = len(errors)
    bound = set(_COMPREHENSION.findall(source))
    for u in sorted(cond.names - set(monitors) - set(CONTEXT_NAMES) - bound):
        errors.append(
            pos.error_in(
                at,
                cond.column_of(u),
                f"unknown name {u!r}; {_hint(u, monitors)}monitors: {', '.join(monitors) or '(none)'}; "
                f"also available: {', '.join(CONTEXT_NAMES)}",
            )
        )
    known_functions = set(FUNCTIONS) | CEL_BUILTINS
    for f in sorted(cond.all_functions - known_functions):
        errors.append(
            pos.error_in(
                at,
                cond.column_of(f),
                f"unknown function {f!r}; {_hint(f, sorted(FUNCTIONS))}helpers: {', '.join(FUNCTIONS)}",
            )
        )
    for call in _HELPER_CALL.finditer(source):
        helper, args = call.group(1), call.group(2)
        pieces = args.split(",")
        col = call.start(2) + 1
        if len(pieces) != 2:
            errors.append(
                pos.error_in(
                    at, call.start() + 1, f'{helper}() takes two arguments: {helper}("<monitor>", "<duration>")'
                )
            )
            continue
        first = _STRING.match(pieces[0])
        if first is None:
            bare = pieces[0].strip()
            errors.append(
                pos.error_in(
                    at,
                    col + len(pieces[0]) - len(pieces[0].lstrip()),
                    f'{helper}() takes the monitor\'s name as a string: {helper}("{bare}", ...)',
                )
            )
        else:
            name = first.group(1) if first.group(1) is not None else first.group(2)
            helped.add(name)
            if name not in monitors:
                errors.append(
                    pos.error_in(
                        at,
                        col + len(pieces[0]) - len(pieces[0].lstrip()),
                        f"{helper}() names unknown monitor {name!r}; {_hint(name, monitors)}"
                        f"monitors: {', '.join(monitors) or '(none)'}",
                    )
                )
        second = _STRING.match(pieces[1])
        dcol = col + len(pieces[0]) + 1 + len(pieces[1]) - len(pieces[1].lstrip())
        if second is None:
            errors.append(pos.error_in(at, dcol, f'{helper}() takes a duration string such as "1h"'))
        else:
            try:
                parse_duration(second.group(1) if second.group(1) is not None else second.group(2))
            except ValueError as e:
                errors.append(pos.error_in(at, dcol, str(e)))
    return cond if len(errors) == before else None


def _compile(source: str, at: Path_, pos: _Positions, errors: list[PolicyError]) -> Condition | None:
    try:
        return Condition(source)
    except ConditionError as e:
        errors.append(pos.error_in(at, e.column, f"CEL: {e.message}", line_offset=e.line - 1))
        return None


class _Positions:
    """Line and column of every key and value of a composed YAML document."""

    def __init__(self, file: str, text: str = "") -> None:
        self.file = file
        self.lines = text.splitlines()
        self.keys: dict[Path_, tuple[int, int]] = {}
        self.values: dict[Path_, yaml.Node] = {}

    def walk(self, node: yaml.Node, path: Path_) -> None:
        self.values[path] = node
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                key: Any = k.value
                if k.tag.endswith(":bool") or (
                    isinstance(key, str) and key.lower() in ("on", "yes", "true") and k.style is None
                ):
                    key = True if key.lower() in ("on", "yes", "true") else key
                self.keys[path + (key,)] = (k.start_mark.line + 1, k.start_mark.column + 1)
                self.walk(v, path + (key,))
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                self.walk(v, path + (i,))

    def _where(self, path: Path_) -> str:
        out = ""
        for p in path:
            p = "on" if p is True else p
            out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
        return out

    def error(self, path: Path_, message: str, key: bool = False) -> PolicyError:
        probe = path
        while probe:
            if key and probe in self.keys:
                line, col = self.keys[probe]
                return PolicyError(self.file, line, col, self._where(path), message)
            node = self.values.get(probe)
            if node is not None:
                return PolicyError(
                    self.file, node.start_mark.line + 1, node.start_mark.column + 1, self._where(path), message
                )
            probe = probe[:-1]
            key = False
        return PolicyError(self.file, 1, 1, self._where(path), message)

    def error_in(self, path: Path_, column: int, message: str, line_offset: int = 0) -> PolicyError:
        """An error at ``column`` (1-based) inside the scalar at ``path``."""
        node = self.values.get(path)
        if not isinstance(node, yaml.ScalarNode):
            return self.error(path, message)
        line, col = node.start_mark.line + 1, node.start_mark.column + 1
        if node.style in ("'", '"'):
            col += 1
        elif node.style in ("|", ">"):
            # Content starts on the next line, at the block's indentation.
            body = [x for x in self.lines[line:] if x.strip()]
            line, col = line + 1, (len(body[0]) - len(body[0].lstrip()) + 1) if body else 1
        if line_offset:
            line += line_offset
            if node.style not in ("|", ">"):
                col = 1
        return PolicyError(self.file, line, col + column - 1, self._where(path), message)


def _pydantic_errors(exc: ValidationError, pos: _Positions, data: dict[Any, Any]) -> list[PolicyError]:
    out = []
    for err in exc.errors():
        loc = tuple(x for x in err["loc"] if not (isinstance(x, str) and x.startswith("function-")))
        loc = tuple("for" if x == "for_" else x for x in loc)
        if len(loc) > 2 and loc[0] == "monitors" and loc[2] in MONITOR_MODELS:
            loc = loc[:2] + loc[3:]  # the discriminated union's tag is not part of the file's path
        kind = err["type"]
        if kind == "extra_forbidden" and loc[0] == "monitors" and loc[-1] == "window" and len(loc) == 3:
            kind_name = data["monitors"][loc[1]].get("kind")
            out.append(
                pos.error(loc, f"a monitor of kind {kind_name!r} has no window: it updates on every event", key=True)
            )
        elif kind == "extra_forbidden":
            allowed = _allowed_keys(loc[:-1], data)
            hint = _hint(str(loc[-1]), allowed)
            tail = f"; {hint.strip()}" if hint else (f"; allowed: {', '.join(allowed)}" if allowed else "")
            out.append(pos.error(loc, f"unknown key {loc[-1]!r}{tail}", key=True))
        elif kind == "missing":
            out.append(pos.error(loc, "required field missing"))
        elif kind == "union_tag_invalid":
            tag = str(err.get("ctx", {}).get("tag"))
            kinds = sorted(MONITORS)
            close = difflib.get_close_matches(tag, kinds, n=1, cutoff=HINT_CUTOFF)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known kinds: {', '.join(kinds)}"
            out.append(pos.error(loc + ("kind",), f"unknown monitor kind {tag!r}{hint}"))
        elif kind == "union_tag_not_found":
            out.append(pos.error(loc, f"a monitor needs 'kind', one of: {', '.join(sorted(MONITORS))}"))
        else:
            msg = err["msg"].removeprefix("Value error, ")
            out.append(pos.error(loc, msg))
    return out


def _allowed_keys(loc: tuple[Any, ...], data: Any) -> list[str]:
    """The keys the model at ``loc`` accepts (for 'did you mean')."""
    model: Any = Policy
    i = 0
    while i < len(loc):
        part = loc[i]
        data = (
            data.get(part)
            if isinstance(data, dict)
            else (data[part] if isinstance(data, list) and isinstance(part, int) and part < len(data) else None)
        )
        if model is Policy and part == "monitors" and i + 1 < len(loc):
            i += 1
            data = data.get(loc[i]) if isinstance(data, dict) else None
            model = MONITOR_MODELS.get(str(data.get("kind"))) if isinstance(data, dict) else None
        elif isinstance(part, str):
            fields = getattr(model, "model_fields", None) or {}
            match = next((f for n, f in fields.items() if (f.alias or n) == part), None)
            model = _inner_model(match.annotation) if match else None
        i += 1
        if model is None:
            return []
    fields = getattr(model, "model_fields", {})
    return sorted(f.alias or n for n, f in fields.items())


def _inner_model(annotation: Any) -> Any:
    import typing

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        inner = _inner_model(arg)
        if inner is not None:
            return inner
    return None


def _alert_errors(rule: Rule, at: Path_, pos: _Positions) -> list[PolicyError]:
    """The alerting keys of a rule: ``resolve_after`` parses; annotation templates are well formed."""
    import string

    errors = []
    if rule.resolve_after is not None:
        try:
            parse_resolve_after(rule.resolve_after)
        except ValueError as e:
            errors.append(pos.error(at + ("resolve_after",), str(e)))
        if rule.schedule is not None:
            errors.append(pos.error(at + ("resolve_after",), "'resolve_after' has no meaning on a scheduled rule"))
    for name, template in rule.annotations.items():
        try:
            list(string.Formatter().parse(template))
        except ValueError as e:
            errors.append(
                pos.error(
                    at + ("annotations", name),
                    f"bad template: {e} (write {{value}} for a field, {{{{ and }}}} for braces)",
                )
            )
    return errors
