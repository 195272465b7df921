"""Model registry: immutable numbered versions plus movable aliases.

:class:`Registry` is the interface the lifecycle uses; :class:`LocalRegistry` implements it on
a directory (an MLflow-backed registry can implement the same protocol)::

    root/<model>/versions/v0001/model.pkl        artifacts, copied at registration
    root/<model>/versions/v0001/metadata.json    created, parent, caller's lineage and metrics
    root/<model>/aliases.json                    {"champion": "v0003", "previous": "v0002"}

A version directory is complete before it gets its name (copied under a temporary name, then
renamed), and ``aliases.json`` is replaced atomically (temporary file, fsync, ``os.replace``),
so a reader sees the old or the new state, never a mix. Writers of one model serialize on an
``fcntl`` lock file, across threads and processes.

Loading unpickles: only register artifacts you trust.

>>> import pickle, tempfile
>>> from pathlib import Path
>>> tmp = Path(tempfile.mkdtemp())
>>> art = tmp / "art"; art.mkdir()
>>> _ = (art / "model.pkl").write_bytes(pickle.dumps({"weights": [1, 2]}))
>>> reg = LocalRegistry(tmp / "registry")
>>> v1 = reg.register("churn", art, {"data": "sha256:abc"})
>>> v1.version, v1.metadata["parent"], v1.metadata["data"]
('v0001', None, 'sha256:abc')
>>> reg.set_alias("churn", "champion", v1.version)
>>> reg.register("churn", art, {}).metadata["parent"]
'v0001'
>>> reg.alias("churn", "champion").version, [v.version for v in reg.versions("churn")]
('v0001', ['v0001', 'v0002'])
>>> reg.load("churn", "v0002")
{'weights': [1, 2]}
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import pickle
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from driftwarden.deploy.files import atomic_write_text, fsync_dir, fsync_tree
from driftwarden.deploy.training import MODEL_FILE


def open_registry(location: str | Path) -> Registry:
    """The registry at ``location``: ``mlflow:<tracking uri>`` (e.g.
    ``mlflow:sqlite:///state/mlflow.db``, needs the ``mlflow`` extra) or a local directory.

    >>> open_registry("/tmp/reg")
    LocalRegistry(root='/tmp/reg')
    """
    text = str(location)
    if text.startswith("mlflow:"):
        from driftwarden.deploy.mlflow_registry import MlflowRegistry

        return MlflowRegistry(text.removeprefix("mlflow:"))
    return LocalRegistry(Path(text))


METADATA_FILE = "metadata.json"
ALIASES_FILE = "aliases.json"
CHAMPION = "champion"
#: The champion before the current one; rollback goes back to it.
PREVIOUS = "previous"
#: A registered candidate not yet promoted (shadow mode scores it on live traffic).
CHALLENGER = "challenger"

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_VERSION = re.compile(r"^v(\d{4,})$")


@dataclass(frozen=True)
class ModelVersion:
    """One registered version: ``path`` is its directory (``model.pkl`` and friends)."""

    model: str
    version: str
    path: Path
    metadata: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @property
    def number(self) -> int:
        return version_number(self.version)

    @property
    def model_path(self) -> Path:
        return self.path / MODEL_FILE


@runtime_checkable
class Registry(Protocol):
    """What the lifecycle and the CLI need from a model registry (:class:`LocalRegistry`,
    :class:`driftwarden.deploy.mlflow_registry.MlflowRegistry`). Version ids look like ``v0001``."""

    def models(self) -> list[str]: ...

    def aliases(self, model: str) -> dict[str, str]: ...

    def register(self, model: str, artifact_dir: Path, metadata: Mapping[str, Any]) -> ModelVersion: ...

    def versions(self, model: str) -> list[ModelVersion]: ...

    def get(self, model: str, version: str) -> ModelVersion: ...

    def alias(self, model: str, name: str) -> ModelVersion | None: ...

    def set_alias(self, model: str, name: str, version: str | None) -> None: ...

    def move_champion(self, model: str, version: str, expected: str | None) -> bool: ...

    def load(self, model: str, version: str) -> Any: ...


def version_id(number: int) -> str:
    """The id of version ``number``.

    >>> version_id(3)
    'v0003'
    """
    return f"v{number:04d}"


def version_number(version: str) -> int:
    """The number of version id ``version``.

    >>> version_number("v0012")
    12
    """
    m = _VERSION.match(version)
    if m is None:
        raise ValueError(f"version must look like 'v0001', got {version!r}")
    return int(m.group(1))


class LocalRegistry:
    """A :class:`Registry` on a local directory (see the module docstring for the layout)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"LocalRegistry(root={str(self.root)!r})"

    # -- reading -------------------------------------------------------------------------

    def models(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / "versions").is_dir())

    def versions(self, model: str) -> list[ModelVersion]:
        """All versions of ``model``, oldest first."""
        vdir = self._model_dir(model) / "versions"
        if not vdir.is_dir():
            return []
        numbers = sorted(version_number(p.name) for p in vdir.iterdir() if _VERSION.match(p.name))
        return [self.get(model, version_id(n)) for n in numbers]

    def get(self, model: str, version: str) -> ModelVersion:
        """One version; ``KeyError`` when it does not exist."""
        version_number(version)
        path = self._model_dir(model) / "versions" / version
        try:
            metadata = json.loads((path / METADATA_FILE).read_text())
        except FileNotFoundError:
            raise KeyError(f"model {model!r} has no version {version!r}") from None
        return ModelVersion(model=model, version=version, path=path, metadata=metadata)

    def aliases(self, model: str) -> dict[str, str]:
        """``{alias: version}`` of ``model``."""
        try:
            data = json.loads((self._model_dir(model) / ALIASES_FILE).read_text())
        except FileNotFoundError:
            return {}
        return {str(k): str(v) for k, v in data.items()}

    def alias(self, model: str, name: str) -> ModelVersion | None:
        """The version an alias points to, or ``None`` when the alias is not set."""
        version = self.aliases(model).get(name)
        return None if version is None else self.get(model, version)

    def load(self, model: str, version: str) -> Any:
        """Unpickle a version's ``model.pkl``."""
        with open(self.get(model, version).model_path, "rb") as f:
            return pickle.load(f)

    # -- writing -------------------------------------------------------------------------

    def register(self, model: str, artifact_dir: Path, metadata: Mapping[str, Any]) -> ModelVersion:
        """Copy ``artifact_dir`` (must hold ``model.pkl``) as the next version of ``model``.

        Metadata gets ``model``, ``version``, ``created`` (UTC ISO-8601) and ``parent`` (the
        champion at registration unless the caller gives ``parent``) on top of the caller's
        fields, which must be JSON-serializable.
        """
        artifact_dir = Path(artifact_dir)
        if not (artifact_dir / MODEL_FILE).is_file():
            raise ValueError(f"artifact_dir {artifact_dir} has no {MODEL_FILE}")
        vdir = self._model_dir(model) / "versions"
        vdir.mkdir(parents=True, exist_ok=True)
        with self._locked(model):
            _clean_temporaries(vdir)
            current = self.aliases(model).get(CHAMPION)
            existing = [version_number(p.name) for p in vdir.iterdir() if _VERSION.match(p.name)]
            version = version_id(max(existing, default=0) + 1)
            meta: dict[str, Any] = {"parent": current}
            meta.update(metadata)
            meta.update(
                model=model,
                version=version,
                created=dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
            )
            text = metadata_text(meta)
            staging = Path(tempfile.mkdtemp(dir=vdir, prefix=".tmp-"))
            try:
                shutil.copytree(artifact_dir, staging, dirs_exist_ok=True)
                (staging / METADATA_FILE).write_text(text)
                fsync_tree(staging)
                os.rename(staging, vdir / version)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            fsync_dir(vdir)
        return self.get(model, version)

    def clean_staging(self) -> list[Path]:
        """Remove the partial copies a registration killed mid-copy left behind; return what was removed.

        Each model's folder is cleaned under that model's lock, so a registration running in another process
        keeps its own staging folder. The daemon calls this once at start-up.
        """
        removed: list[Path] = []
        for model in self.models():
            vdir = self._model_dir(model) / "versions"
            with self._locked(model):
                removed += _clean_temporaries(vdir)
        return removed

    def set_alias(self, model: str, name: str, version: str | None) -> None:
        """Point alias ``name`` at ``version`` (which must exist); ``None`` removes it."""
        check_name(name, "alias")
        if version is not None:
            self.get(model, version)
        with self._locked(model):
            aliases = self.aliases(model)
            if version is None:
                aliases.pop(name, None)
            else:
                aliases[name] = version
            atomic_write_text(
                self._model_dir(model) / ALIASES_FILE,
                json.dumps(aliases, indent=2, sort_keys=True),
            )

    def move_champion(self, model: str, version: str, expected: str | None) -> bool:
        """Compare-and-swap of the champion: when it is still ``expected`` (``None``: no champion),
        ``champion`` → ``version`` and ``previous`` → ``expected`` (the challenger alias is cleared
        if it named ``version``), in one atomic write; True. When the champion is already
        ``version`` (a repeated call) nothing changes; True. Otherwise nothing changes; False.

        >>> import pickle, tempfile
        >>> tmp = Path(tempfile.mkdtemp()); art = tmp / "art"; art.mkdir()
        >>> _ = (art / "model.pkl").write_bytes(pickle.dumps(0))
        >>> reg = LocalRegistry(tmp / "r")
        >>> v1, v2, v3 = (reg.register("m", art, {}).version for _ in range(3))
        >>> reg.move_champion("m", v1, None), reg.move_champion("m", v2, v1), reg.aliases("m")
        (True, True, {'champion': 'v0002', 'previous': 'v0001'})
        >>> reg.move_champion("m", v3, v1), reg.aliases("m")["champion"]  # stale: compared with v0001
        (False, 'v0002')
        """
        self.get(model, version)
        with self._locked(model):
            aliases = self.aliases(model)
            current = aliases.get(CHAMPION)
            if current == version:
                return True
            if current != expected:
                return False
            aliases[CHAMPION] = version
            if expected is not None:
                aliases[PREVIOUS] = expected
            if aliases.get(CHALLENGER) == version:
                del aliases[CHALLENGER]
            atomic_write_text(
                self._model_dir(model) / ALIASES_FILE,
                json.dumps(aliases, indent=2, sort_keys=True),
            )
            return True

    # -- helpers -------------------------------------------------------------------------

    def _model_dir(self, model: str) -> Path:
        check_name(model, "model")
        return self.root / model

    @contextlib.contextmanager
    def _locked(self, model: str) -> Iterator[None]:
        mdir = self._model_dir(model)
        mdir.mkdir(parents=True, exist_ok=True)
        with open(mdir / ".lock", "a+b") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def check_name(name: str, what: str) -> None:
    """Refuse a model or alias name that is not a safe file and URL component.

    >>> check_name("churn-v2", "model")
    >>> check_name("../etc", "alias")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: alias name '../etc' is not allowed: use letters, digits, ...
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"{what} name {name!r} is not allowed: use letters, digits, '.', '_', '-' "
            "(starting with a letter or digit, at most 128 characters)"
        )


def metadata_text(metadata: Mapping[str, Any]) -> str:
    """A version's metadata as the registries store it: sorted JSON; paths, dates, numpy
    scalars and sets become JSON values, anything else is refused.

    >>> import datetime as dt
    >>> print(metadata_text({"rows": 3, "at": dt.date(2026, 1, 2)}))
    {
      "at": "2026-01-02",
      "rows": 3
    }
    """
    return json.dumps(metadata, indent=2, sort_keys=True, default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return value.item()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"metadata value {value!r} ({type(value).__name__}) is not JSON-serializable")


def _clean_temporaries(vdir: Path) -> list[Path]:
    """Remove staging directories left by a crash (called under the model's lock); return them."""
    removed = [p for p in vdir.iterdir() if p.name.startswith(".tmp-")]
    for p in removed:
        shutil.rmtree(p, ignore_errors=True)
    return removed
