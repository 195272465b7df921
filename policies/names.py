"""What a model name may be: it names files and folders in the state folder and the registry.

>>> [valid_model_name(n) for n in ("churn", "credit-v2.eu", "../x", "/abs", "m\\0", "..", "a" * 201)]
[True, True, False, False, False, False, False]
>>> model_name_problem("a/b")
"a model name has no path separator ('/' or backslash), NUL or control character, and is not '.' or '..'"
"""

from __future__ import annotations

import re

MAX_MODEL_NAME = 200
"""Characters in a model name: well under a file name's 255 bytes, with room for suffixes."""

_NAME = re.compile(r"[^\x00-\x1f\x7f/\\]+")


def valid_model_name(name: str) -> bool:
    """Whether ``name`` can name files: no path separator, NUL or control character, not ``.``/``..``, not too long."""
    return 0 < len(name) <= MAX_MODEL_NAME and _NAME.fullmatch(name) is not None and name not in (".", "..")


def model_name_problem(name: str) -> str | None:
    """Why ``name`` is not a model name, or None when it is one."""
    if not name:
        return "a model name is not empty"
    if len(name) > MAX_MODEL_NAME:
        return f"a model name has at most {MAX_MODEL_NAME} characters, got {len(name)}"
    if not valid_model_name(name):
        return "a model name has no path separator ('/' or backslash), NUL or control character, and is not '.' or '..'"
    return None
