"""Load a policy file: every error collected, each as ``file:line:col: field: message``.

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> _ = (d / "p.yaml").write_text("version: 1\\nmodel: m\\nmonitors:\\n  e: {kind: adwin, series: error}\\n"
...                          "rules:\\n  - {name: r, when: 'e.drift && x.value > 1', do: alert, cooldown: 6 hours}\\n")
>>> for e in check_policy(d / "p.yaml"): print(e.short())
p.yaml:6:33: rules[0].when: unknown name 'x'; monitors: e; also available: events, labels, dead_letters
p.yaml:6:68: rules[0].cooldown: not a duration: '6 hours' (use a number and a unit: 30s, 10m, 6h, 1d, 1w)
"""

from __future__ import annotations

import difflib
import hashlib
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from detectors.registry import MONITORS, build
from policies.conditions import Condition, ConditionError
from policies.durations import parse_duration, parse_for
from policies.rules import RuleTiming
from policies.schema import BUILTIN_ACTIONS, Policy

CONTEXT_NAMES = ("events", "labels", "dead_letters")
"""Names every condition may read besides the monitors: ``events.count``, ``labels.count``, ``dead_letters.count``."""

GATE_NAMES = ("candidate", "champion")
ROLLBACK_NAMES = ("live", "champion", "candidate")

Path_ = tuple[str | int, ...]


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
    promote_if: dict[str, Condition] = field(default_factory=dict)
    rollback_if: dict[str, Condition] = field(default_factory=dict)

    @property
    def model(self) -> str:
        return self.spec.model


def load_policy(path: str | Path) -> LoadedPolicy:
    """The policy at ``path``, or :class:`PolicyLoadError` listing every error."""
    loaded, errors = _load(Path(path))
    if errors or loaded is None:
        raise PolicyLoadError(errors)
    return loaded


def check_policy(path: str | Path) -> list[PolicyError]:
    """Every error of the policy at ``path`` (empty when it is valid)."""
    return _load(Path(path))[1]


def _load(path: Path) -> tuple[LoadedPolicy | None, list[PolicyError]]:
    file = str(path)
    try:
        text = path.read_text()
    except OSError as e:
        return None, [PolicyError(file, 1, 1, "", f"cannot read: {e.strerror or e}")]
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        return None, [PolicyError(file, line, col, "", f"YAML: {e.problem or e.context}")]
    positions = _Positions(file)
    if node is not None:
        positions.walk(node, ())
    if not isinstance(data, dict):
        return None, [PolicyError(file, 1, 1, "", "a policy is a YAML mapping (version, model, monitors, rules, actions)")]
    errors = [positions.error((k,), "YAML reads the bare key 'on' as true; write 'series:' (monitors) or 'when:' (rules)", key=True)
              for k in data if k is True]
    errors += _nested_on_keys(data, (), positions)
    if errors:
        return None, errors
    try:
        spec = Policy.model_validate(data)
    except ValidationError as e:
        return None, _pydantic_errors(e, positions)
    loaded = LoadedPolicy(path=path, spec=spec, digest=hashlib.sha256(text.encode()).hexdigest())
    errors = _semantic_errors(loaded, positions, path)
    return (None if errors else loaded), errors


def _nested_on_keys(data: Any, path: Path_, positions: _Positions) -> list[PolicyError]:
    out = []
    if isinstance(data, dict):
        for k, v in data.items():
            if k is True and path:
                out.append(positions.error(path + (True,), "YAML reads the bare key 'on' as true; write 'series:' instead", key=True))
            out += _nested_on_keys(v, path + (k,), positions)
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out += _nested_on_keys(v, path + (i,), positions)
    return out


def _semantic_errors(p: LoadedPolicy, pos: _Positions, path: Path) -> list[PolicyError]:
    spec, errors = p.spec, []
    for name, m in spec.monitors.items():
        if m.kind not in MONITORS:
            close = difflib.get_close_matches(m.kind, MONITORS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known kinds: {', '.join(sorted(MONITORS))}"
            errors.append(pos.error(("monitors", name, "kind"), f"unknown monitor kind {m.kind!r}{hint}"))
            continue
        try:
            build(m.kind, monitor_params(m))
        except ValueError as e:
            errors.append(pos.error(("monitors", name), str(e)))
    names = sorted(spec.monitors)
    seen: set[str] = set()
    for i, rule in enumerate(spec.rules):
        at: Path_ = ("rules", i)
        if rule.name in seen:
            errors.append(pos.error(at + ("name",), f"duplicate rule name {rule.name!r}"))
        seen.add(rule.name)
        for key in ("when", "require"):
            source = getattr(rule, key)
            if source is None:
                continue
            cond = _compile(source, at + (key,), pos, errors)
            if cond is None:
                continue
            unknown = sorted(cond.names - set(names) - set(CONTEXT_NAMES))
            for u in unknown:
                close = difflib.get_close_matches(u, names, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                errors.append(pos.error_in(at + (key,), cond.column_of(u),
                              f"unknown name {u!r}; {hint}monitors: {', '.join(names) or '(none)'}; "
                              f"also available: {', '.join(CONTEXT_NAMES)}"))
            if not unknown:
                (p.when if key == "when" else p.require)[rule.name] = cond
        timing = _timing(rule, at, pos, errors)
        if timing is not None:
            p.timing[rule.name] = timing
        if rule.schedule is not None:
            try:
                from apscheduler.triggers.cron import CronTrigger

                CronTrigger.from_crontab(rule.schedule)
            except ValueError as e:
                errors.append(pos.error(at + ("schedule",), f"bad cron string {rule.schedule!r}: {e}"))
        if rule.do not in spec.actions and rule.do not in BUILTIN_ACTIONS:
            known = sorted(set(spec.actions) | set(BUILTIN_ACTIONS))
            close = difflib.get_close_matches(rule.do, known, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            errors.append(pos.error(at + ("do",), f"unknown action {rule.do!r}; {hint}actions: {', '.join(known)}"))
    for name, action in spec.actions.items():
        at = ("actions", name)
        if spec.action_type(name) == "retrain":
            if action.train is None:
                errors.append(pos.error(at, "a retrain action needs 'train' (entrypoint or command)"))
            else:
                try:
                    parse_duration(action.train.timeout)
                except ValueError as e:
                    errors.append(pos.error(at + ("train", "timeout"), str(e)))
        gate = _compile(action.promote_if, at + ("promote_if",), pos, errors)
        if gate is not None:
            for u in sorted(gate.names - set(GATE_NAMES)):
                errors.append(pos.error_in(at + ("promote_if",), gate.column_of(u), f"unknown name {u!r}; use candidate.<metric> and champion.<metric>"))
            p.promote_if[name] = gate
        if action.rollback_if is not None:
            rb = _compile(action.rollback_if, at + ("rollback_if",), pos, errors)
            if rb is not None:
                for u in sorted(rb.names - set(ROLLBACK_NAMES)):
                    errors.append(pos.error_in(at + ("rollback_if",), rb.column_of(u), f"unknown name {u!r}; use live.<metric> and champion.<metric>"))
                p.rollback_if[name] = rb
    if spec.reference is not None and not (path.parent / spec.reference.path).exists() and not Path(spec.reference.path).exists():
        errors.append(pos.error(("reference", "path"), f"reference file not found: {spec.reference.path}"))
    return sorted(errors, key=lambda e: (e.line, e.col))


def monitor_params(m: Any) -> dict[str, Any]:
    """A monitor spec's constructor arguments, with ``window`` spelled out."""
    params = m.params()
    if m.window is not None:
        if m.window.events is not None:
            params["window_events"] = m.window.events
        else:
            params["window_events"] = None
            params["window_seconds"] = parse_duration(m.window.time)
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


def _compile(source: str, at: Path_, pos: _Positions, errors: list[PolicyError]) -> Condition | None:
    try:
        return Condition(source)
    except ConditionError as e:
        errors.append(pos.error_in(at, e.column, f"CEL: {e.message}", line_offset=e.line - 1))
        return None


class _Positions:
    """Line and column of every key and value of a composed YAML document."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.keys: dict[Path_, tuple[int, int]] = {}
        self.values: dict[Path_, yaml.Node] = {}

    def walk(self, node: yaml.Node, path: Path_) -> None:
        self.values[path] = node
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                key: Any = k.value
                if k.tag.endswith(":bool") or (isinstance(key, str) and key.lower() in ("on", "yes", "true") and k.style is None):
                    key = True if key.lower() in ("on", "yes", "true") else key
                self.keys[path + (key,)] = (k.start_mark.line + 1, k.start_mark.column + 1)
                self.walk(v, path + (key,))
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                self.walk(v, path + (i,))

    def _where(self, path: Path_) -> str:
        out = ""
        for p in path:
            out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
        return out.replace("True", "on")

    def error(self, path: Path_, message: str, key: bool = False) -> PolicyError:
        probe = path
        while probe:
            if key and probe in self.keys:
                line, col = self.keys[probe]
                return PolicyError(self.file, line, col, self._where(path), message)
            node = self.values.get(probe)
            if node is not None:
                return PolicyError(self.file, node.start_mark.line + 1, node.start_mark.column + 1, self._where(path), message)
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
            line, col = line + 1, col + 2
        if line_offset:
            line, col = line + line_offset, 1
        return PolicyError(self.file, line, col + column - 1, self._where(path), message)


def _pydantic_errors(exc: ValidationError, pos: _Positions) -> list[PolicyError]:
    out = []
    for err in exc.errors():
        loc = tuple(x for x in err["loc"] if not (isinstance(x, str) and x.startswith("function-")))
        loc = tuple("for" if x == "for_" else x for x in loc)
        kind = err["type"]
        if kind == "extra_forbidden":
            allowed = _allowed_keys(loc[:-1])
            close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else (f"; allowed: {', '.join(allowed)}" if allowed else "")
            out.append(pos.error(loc, f"unknown key {loc[-1]!r}{hint}", key=True))
        elif kind == "missing":
            out.append(pos.error(loc, "required field missing"))
        else:
            msg = err["msg"].removeprefix("Value error, ")
            out.append(pos.error(loc, msg))
    return sorted(out, key=lambda e: (e.line, e.col))


def _allowed_keys(loc: Iterable[str | int]) -> list[str]:
    """The keys the model at ``loc`` accepts (for 'did you mean')."""
    model: Any = Policy
    for part in loc:
        fields = getattr(model, "model_fields", None)
        if fields is None:
            return []
        if isinstance(part, str) and part in {f.alias or n for n, f in fields.items()}:
            name = next(n for n, f in fields.items() if (f.alias or n) == part)
            model = _inner_model(fields[name].annotation)
        elif isinstance(model, type) and issubclass(model, BaseModel):
            continue
    fields = getattr(model, "model_fields", {})
    return sorted(f.alias or n for n, f in fields.items())


def _inner_model(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        inner = _inner_model(arg)
        if inner is not None:
            return inner
    return None
