"""The fixed set of reason codes a dead letter carries (docs/input.md shows this table; a test keeps them in sync).

>>> sorted(REASONS)[:3]
['bad_field', 'bad_name', 'bad_ts']
>>> all(text.endswith(".") for text in REASONS.values())
True
"""

from __future__ import annotations

REASONS: dict[str, str] = {
    "too_large": "The record is longer than `input.max_record_bytes`; it was not decoded.",
    "not_json": "The record is not UTF-8 JSON (or its JSON is broken, or nests deeper than JSON parsers allow).",
    "not_object": "The record is JSON but not an object.",
    "missing_field": "A required field (`model`, `id`) is absent or null.",
    "bad_field": "A field has the wrong type or shape: `model` not a non-empty string, `id` neither a string "
    "nor an integer, `features`/`attributes` not objects of scalars, `prediction`/`label` not scalars, "
    "`score` neither a number nor a class-to-probability map.",
    "bad_name": "`model` is not a usable name: longer than 200 characters, or with a path separator, a "
    "control character or a NUL, or `.`/`..`.",
    "empty_event": "The event has neither features, a prediction, a score nor a label.",
    "bad_ts": "`ts` is neither ISO-8601 nor an epoch number in seconds, milliseconds, microseconds or "
    "nanoseconds after 1970 (a boolean, a negative or non-finite number, or one too large for any of those units).",
    "ts_ahead": "`ts` lies more than `input.max_ahead` past the stream's watermark (a clock far ahead, or a "
    "wrong unit): it would close time windows and expire pending labels early.",
    "ts_behind": "`ts` lies more than `input.max_behind` before the stream's watermark (off by default).",
}
"""Reason code → what it means. A dead letter's ``code`` is always one of these keys."""


def table() -> str:
    """The reason codes as a Markdown table (docs/input.md holds it between markers; a test keeps it in sync).

    >>> table().splitlines()[:2]
    ['| code | meaning |', '| --- | --- |']
    """
    rows = [f"| `{code}` | {text} |" for code, text in REASONS.items()]
    return "\n".join(["| code | meaning |", "| --- | --- |", *rows])


if __name__ == "__main__":
    print(table())
