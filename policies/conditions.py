"""Conditions in CEL (Common Expression Language), compiled once and evaluated many times.

>>> c = Condition("inputs.share_drifted >= 0.3 || errors.drift")
>>> sorted(c.names)
['errors', 'inputs']
>>> c.evaluate({"inputs": {"share_drifted": 0.5}, "errors": {"drift": False}})
True
>>> Condition("x >")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
driftwarden.policies.conditions.ConditionError: 1:4: syntax error: mismatched input '<EOF>' expecting ...
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from driftwarden.detectors.lazy import import_leaf

cel = import_leaf("cel.cel")
"""The compiled CEL library itself: the ``cel`` package's ``__init__`` also loads its interactive
shell (prompt_toolkit, pygments, typer: 18 MB of RSS in a daemon that never uses it)."""

FUNCTIONS = ("fired_within", "count", "seconds")
"""Helpers available in every rule condition: ``fired_within(monitor, duration)`` and
``count(monitor, duration)`` turn detector edges into levels; ``seconds(duration)`` is a
duration string in seconds (to compare with ``model.age`` or ``actions.<kind>.since``)."""

CEL_BUILTINS = frozenset(
    "size has matches startsWith endsWith contains int uint double string bytes bool duration timestamp type "
    "dyn all exists exists_one map filter getFullYear getMonth getDate getDayOfMonth getDayOfWeek "
    "getDayOfYear getHours getMinutes getSeconds getMilliseconds".split()
)
"""CEL's standard functions and macros."""

_POSITION = re.compile(r"<input>:(\d+):(\d+):\s*(.*)")
_MACRO = re.compile(r"\.\s*(?:all|exists_one|exists|map|filter)\s*\(")
_STRING_LITERAL = re.compile(r"""(?s)"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'""")

MAX_CONDITION_CHARS = 2000
"""Characters of one condition: a real one is under 200; the CEL binding panics on columns past 65,535."""

MAX_COST = 100_000
"""Comprehension steps one evaluation may take (about 1 s at worst): nested macros over lists multiply."""

UNKNOWN_RANGE = 1000
"""Items assumed for a list or map that is not a literal (a context value: features, firings)."""


class ConditionError(ValueError):
    """A condition that does not compile; ``line``/``column`` are 1-based inside the expression."""

    def __init__(self, message: str, line: int = 1, column: int = 1) -> None:
        super().__init__(f"{line}:{column}: {message}")
        self.message, self.line, self.column = message, line, column


class Condition:
    """A compiled CEL condition. ``names`` are the top-level identifiers it reads."""

    def __init__(self, source: str) -> None:
        if not source.strip():
            raise ConditionError("empty condition")
        if len(source) > MAX_CONDITION_CHARS:
            raise ConditionError(f"a condition has at most {MAX_CONDITION_CHARS} characters, this one {len(source)}")
        cost, column = estimate_cost(source)
        if cost > MAX_COST:
            raise ConditionError(
                f"too costly: its comprehensions may take {cost:,} steps per evaluation, "
                f"over the budget of {MAX_COST:,}",
                1,
                column,
            )
        try:
            self._program = cel.compile(source)
        except ValueError as e:
            raise _syntax_error(str(e)) from None
        except BaseException as e:  # the binding's Rust panics (pyo3 PanicException) derive from BaseException
            if type(e).__name__ != "PanicException":
                raise
            raise ConditionError(f"the CEL compiler failed on this condition: {str(e)[:100]}") from None
        self.source = source
        self.names = frozenset(self._program.variables())
        self.all_functions = frozenset(f for f in self._program.functions() if f[:1].isalpha())
        """Every named function the condition calls (operators excluded)."""
        self.functions = self.all_functions & frozenset(FUNCTIONS)

    def column_of(self, name: str) -> int:
        """1-based column of the first use of identifier ``name`` (for error messages)."""
        m = re.search(rf"(?<![\w.]){re.escape(name)}\b", self.source)
        return m.start() + 1 if m else 1

    def evaluate(self, context: Mapping[str, Any], functions: Mapping[str, Callable[..., Any]] | None = None) -> bool:
        """True when the condition holds; errors (a missing field, a type mismatch) raise ValueError."""
        env = dict(context)
        if functions:
            env.update(functions)
        try:
            result = self._program.execute(env)
        except (KeyError, TypeError, RuntimeError, ValueError, ArithmeticError, IndexError) as e:
            raise ValueError(f"condition {self.source!r} failed: {type(e).__name__}: {e}") from None
        except BaseException as e:  # a panic inside the binding: an error of this condition, not of the daemon
            if type(e).__name__ != "PanicException":
                raise
            raise ValueError(f"condition {self.source!r} failed: the CEL runtime panicked: {str(e)[:100]}") from None
        if not isinstance(result, bool):
            raise ValueError(f"condition {self.source!r} gave {result!r}, not true/false")
        return result

    def __repr__(self) -> str:
        return f"Condition({self.source!r})"


def _syntax_error(text: str) -> ConditionError:
    m = _POSITION.search(text)
    if not m:
        return ConditionError(text.strip().splitlines()[0] if text.strip() else "does not compile")
    message = m.group(3).split("\n")[0]
    message = message[0].lower() + message[1:] if message else "syntax error"
    return ConditionError(message, int(m.group(1)), int(m.group(2)))


def estimate_cost(source: str) -> tuple[int, int]:
    """(steps, column): an upper bound on the comprehension steps of one evaluation, and the 1-based
    column of the costliest comprehension. A step is one evaluation of a macro's body; nested
    macros multiply. The range of a list literal is its length, any other range :data:`UNKNOWN_RANGE`.

    >>> estimate_cost("x.value > 1")
    (0, 1)
    >>> estimate_cost("[1, 2, 3].all(a, [1, 2].exists(b, a > b))")
    (9, 24)
    """
    text = _STRING_LITERAL.sub(lambda m: '"' + " " * (len(m.group()) - 2) + '"', source)
    close: dict[int, int] = {}
    stack: list[int] = []
    for i, ch in enumerate(text):
        if ch in "([{":
            stack.append(i)
        elif ch in ")]}" and stack:
            close[stack.pop()] = i
    opener = {c: o for o, c in close.items()}
    macros = []  # (position of the dot, its call's open and close parentheses, range)
    for m in _MACRO.finditer(text):
        opening = m.end() - 1
        macros.append((m.start(), opening, close.get(opening, len(text)), _range(text, m.start(), opener)))
    worst, column, total = 0, 1, 0
    for dot, _, _, size in macros:
        steps = size
        for other_dot, other_open, other_close, other_size in macros:
            if other_dot != dot and other_open < dot < other_close:
                steps *= other_size
        total += steps
        if steps > worst:
            worst, column = steps, dot + 1
    return total, column


def _range(text: str, dot: int, opener: dict[int, int]) -> int:
    """Items of the list a macro at ``dot`` iterates over: a literal's length, else :data:`UNKNOWN_RANGE`."""
    end = dot - 1
    while end >= 0 and text[end].isspace():
        end -= 1
    if end < 0 or text[end] != "]":
        return UNKNOWN_RANGE
    start = opener.get(end)
    if start is None or (start > 0 and (text[start - 1].isalnum() or text[start - 1] in "_.])")):
        return UNKNOWN_RANGE  # an index (x[0]), not a list literal
    inner = text[start + 1 : end]
    if not inner.strip():
        return 0
    depth, items = 0, 1
    for ch in inner:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            items += 1
    return items
