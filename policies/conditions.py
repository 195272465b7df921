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
        try:
            self._program = cel.compile(source)
        except ValueError as e:
            raise _syntax_error(str(e)) from None
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
        except (KeyError, TypeError, RuntimeError, ValueError) as e:
            raise ValueError(f"condition {self.source!r} failed: {type(e).__name__}: {e}") from None
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
