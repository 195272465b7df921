"""The two types every monitor shares: the column :class:`Batch` it reads and the :class:`Signal` it emits.

A monitor is a small state machine over column batches::

    monitor.update(batch) -> list[Signal]     # zero or more signals, in event order
    monitor.snapshot() -> dict                # plain JSON-able state
    monitor.restore(state)                    # the same monitor, resumed

Monitors never do I/O and never import anything else of driftwarden.

>>> import numpy as np
>>> b = Batch.of(index=[0, 1, 2], features={"x": [1.0, 2.0, 3.0]}, prediction=[1, 0, 1], label=[1, 1, 1])
>>> len(b), b.series("x").tolist(), b.series("error").tolist()
(3, [1.0, 2.0, 3.0], [0.0, 1.0, 0.0])
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Literal

import numpy as np
import orjson

Stream = Literal["predictions", "labeled"]
"""Which batches a monitor reads: every prediction event, or predictions joined with their label."""

SPECIAL_SERIES = ("prediction", "score", "label", "error", "residual")


PART_JSON = "$json"
"""The one key of a :class:`Part` as a dict: its content, already serialized."""


class Part(dict):  # type: ignore[type-arg]
    """A piece of a monitor's snapshot that never changes once made (a window's closed chunk, a fixed
    reference), kept serialized: its compact JSON bytes (``blob``) cost a quarter of the lists of
    numbers they hold. As a dict it is ``{"$json": <those bytes, as an orjson Fragment>}``, so any
    orjson writer embeds the content as it is; :meth:`content` reads it back from a Part or from what
    a JSON round trip made of one. A store that recognises Parts writes each once, by ``key``.

    >>> p = Part({"values": [1.5, 2.0]}); Part.content(p), Part.content(orjson.loads(orjson.dumps(p)))
    ({'values': [1.5, 2.0]}, {'values': [1.5, 2.0]})
    >>> Part.content({"values": [1.0]}), p == Part({"values": [1.5, 2.0]})
    ({'values': [1.0]}, True)
    """

    __slots__ = ("blob", "key")

    def __init__(self, value: Mapping[str, Any] | None = None, *, blob: bytes | None = None) -> None:
        if blob is None:
            blob = orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)
        super().__init__({PART_JSON: orjson.Fragment(blob)})
        self.blob: bytes = blob
        self.key: str | None = None

    @staticmethod
    def content(value: Any) -> Any:
        """The value a Part holds; a round-tripped Part's (``{"$json": value}``); else ``value`` itself."""
        if isinstance(value, Part):
            return orjson.loads(value.blob)
        if isinstance(value, dict) and len(value) == 1 and PART_JSON in value:
            return value[PART_JSON]
        return value

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Part):
            return self.blob == other.blob
        return isinstance(other, dict) and Part.content(other) == orjson.loads(self.blob)

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True, slots=True)
class Batch:
    """Columns of a micro-batch of events of one model.

    ``index`` holds the 0-based index of the input event that brought each row (for a labeled
    batch: the event that completed the join), ``ts`` its event time in epoch seconds.
    Numeric features are float64 arrays with NaN for missing values; categorical features are
    object arrays with None for missing values.
    """

    index: np.ndarray
    ts: np.ndarray
    features: Mapping[str, np.ndarray] = field(default_factory=dict)
    attributes: Mapping[str, np.ndarray] = field(default_factory=dict)
    prediction: np.ndarray | None = None
    score: np.ndarray | None = None
    label: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.index.shape[0])

    @classmethod
    def of(
        cls,
        index: Sequence[int],
        ts: Sequence[float] | None = None,
        features: Mapping[str, Sequence[Any]] | None = None,
        attributes: Mapping[str, Sequence[Any]] | None = None,
        prediction: Sequence[Any] | None = None,
        score: Sequence[float] | None = None,
        label: Sequence[Any] | None = None,
    ) -> Batch:
        """Build a batch from plain sequences (tests, examples, doctests)."""
        idx = np.asarray(index, dtype=np.int64)
        return cls(
            index=idx,
            ts=np.asarray(ts if ts is not None else idx, dtype=np.float64),
            features={k: column(v) for k, v in (features or {}).items()},
            attributes={k: column(v) for k, v in (attributes or {}).items()},
            prediction=None if prediction is None else column(prediction),
            score=None if score is None else np.asarray(score, dtype=np.float64),
            label=None if label is None else column(label),
        )

    def series(self, name: str) -> np.ndarray:
        """The column a monitor watches: a feature, an attribute, or one of
        ``prediction``, ``score``, ``label``, ``error`` (0/1 mistakes) and ``residual`` (label - prediction)."""
        if name == "error":
            return self._error()
        if name == "residual":
            return np.asarray(self._need("label"), float) - np.asarray(self._need("prediction"), float)
        if name in ("prediction", "score", "label"):
            return self._need(name)
        if name in self.features:
            return self.features[name]
        if name in self.attributes:
            return self.attributes[name]
        raise KeyError(f"no series {name!r} in this batch")

    def has(self, name: str) -> bool:
        if name in ("error", "residual"):
            return self.label is not None and self.prediction is not None
        if name in ("prediction", "score", "label"):
            return getattr(self, name) is not None
        return name in self.features or name in self.attributes

    def take(self, mask_or_indices: np.ndarray) -> Batch:
        """The rows selected by a boolean mask or an index array."""

        def pick(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[mask_or_indices]

        return Batch(
            index=self.index[mask_or_indices],
            ts=self.ts[mask_or_indices],
            features={k: v[mask_or_indices] for k, v in self.features.items()},
            attributes={k: v[mask_or_indices] for k, v in self.attributes.items()},
            prediction=pick(self.prediction),
            score=pick(self.score),
            label=pick(self.label),
        )

    def _need(self, name: str) -> np.ndarray:
        value = getattr(self, name)
        if value is None:
            raise KeyError(f"this batch has no {name!r} column")
        return value

    def _error(self) -> np.ndarray:
        label, prediction = self._need("label"), self._need("prediction")
        if label.dtype.kind == "f" and prediction.dtype.kind == "f":
            return (label != prediction).astype(np.float64)
        return np.fromiter((a != b for a, b in zip(label, prediction, strict=True)), float, len(label))


def column(values: Sequence[Any] | np.ndarray) -> np.ndarray:
    """A numeric float64 array when every value is a number or missing, else an object array."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "fiub":
        return values.astype(np.float64, copy=False)
    items = list(values)
    if all(v is None or (isinstance(v, int | float) and not isinstance(v, bool)) for v in items):
        return np.array([math.nan if v is None else v for v in items], dtype=np.float64)
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


@dataclass(frozen=True, slots=True)
class Signal:
    """What a monitor says about the stream at event ``at``.

    ``value`` is the monitor's statistic, ``threshold`` the value it is compared with, ``drift``
    the verdict. Windowed monitors fill ``window_start``/``window_end`` (event indices, end
    exclusive); ``details`` carries kind-specific fields such as ``share_drifted`` or the
    per-feature map ``features``.
    """

    kind: str
    at: int
    ts: float
    drift: bool
    value: float | None = None
    threshold: float | None = None
    p_value: float | None = None
    window_start: int | None = None
    window_end: int | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "details"}
        out.update(self.details)
        return out


class Monitor(ABC):
    """Base of every monitor: configuration in the constructor, runtime state in :meth:`_reset`.

    Subclasses set ``kind`` (the name policies use) and ``stream``, store every constructor
    argument under its own name, and implement :meth:`update`, :meth:`snapshot` and :meth:`restore`.
    """

    kind: ClassVar[str]
    stream: ClassVar[Stream] = "predictions"
    edge: ClassVar[bool] = False
    """True for streaming detectors whose ``drift`` holds for one update only (an edge, not a level)."""

    def __init__(self) -> None:
        self._reset()

    @abstractmethod
    def _reset(self) -> None:
        """Create the runtime state."""

    @abstractmethod
    def update(self, batch: Batch) -> list[Signal]:
        """Consume one batch; return the signals it caused, in event order."""

    @abstractmethod
    def snapshot(self) -> dict[str, Any]:
        """The runtime state as plain JSON-able data."""

    @abstractmethod
    def restore(self, state: Mapping[str, Any]) -> None:
        """Resume from :meth:`snapshot` output."""

    def preload(self) -> None:  # noqa: B027 - an optional hook, empty for most monitors
        """Import the libraries :meth:`update` will need, so the first window does not stall a
        running stream (the daemon calls this at start; ``validate`` does not pay for it)."""

    def window_fill(self) -> float | None:
        """Share of the open window collected so far (0 to 1) for a monitor with a window of N events;
        None for other monitors. Windowed monitors keep their windower as ``_windows``."""
        windows = getattr(self, "_windows", None)
        events = getattr(windows, "events", None)
        return min(1.0, windows.pending / events) if events else None  # type: ignore[union-attr]

    def params(self) -> dict[str, Any]:
        """The constructor arguments (the monitor's configuration)."""
        import inspect

        return {name: getattr(self, name) for name in inspect.signature(type(self)).parameters}

    def clone(self) -> Monitor:
        """A fresh monitor with the same configuration."""
        return type(self)(**self.params())

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"
