"""Event times: ``ts`` as ISO-8601 or epoch numbers (seconds, ms, µs or ns) to epoch seconds.

Its own module: decoding (events.py, batch_decoder.py) and the sources that order records by
event time (sources.py, merge.py) all read it, and none of them needs the others for it.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from driftwarden.daemon.io.watermark import epoch_seconds


def short_repr(value: Any, limit: int = 80) -> str:
    """``repr`` cut to ``limit`` characters: a reason never repeats a huge value.

    >>> short_repr("x" * 100, 10)
    "'xxxxxx..."
    """
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_ts(value: Any) -> float:
    """Epoch seconds of an ISO-8601 string or an epoch number (seconds, ms, µs or ns: see
    :func:`~driftwarden.daemon.io.watermark.epoch_seconds`).

    >>> parse_ts("2026-11-27T17:00:00.123Z"), parse_ts(1.5), parse_ts(1_795_798_800_123)
    (1795798800.123, 1.5, 1795798800.123)
    """
    if isinstance(value, bool):
        raise ValueError(f"'ts' must be ISO-8601 or epoch seconds, got {value!r}")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError("'ts' is not finite")
        return float(epoch_seconds(value))
    if isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"'ts' is not ISO-8601: {short_repr(value)}") from None
        if dt.tzinfo is None:
            from datetime import UTC

            dt = dt.replace(tzinfo=UTC)
        try:
            return float(epoch_seconds(dt.timestamp()))
        except (ValueError, OverflowError, OSError):
            raise ValueError(f"'ts' {short_repr(value)} is before 1970") from None
    raise ValueError(f"'ts' must be ISO-8601 or epoch seconds, got {type(value).__name__}")
