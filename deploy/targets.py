"""Deploy targets: where the champion is served from.

:class:`LocalTarget` serves from a local directory path that is a symlink to one whole copy of
the deployed version::

    serving/churn                         -> .churn.versions/v0003   (relative symlink)
    serving/.churn.versions/v0003/        model.pkl, metadata.json, VERSION, DEPLOYED.json
    serving/.churn.versions/v0002/        kept for readers that opened it before the switch
    serving/.churn.versions/history.json  deploys in order

A deploy copies the version completely (fsynced) under a temporary name, renames it into
place, then switches by creating a new symlink under a temporary name and ``os.replace``-ing
it over the old one: a reader that opens ``serving/churn/model.pkl`` gets the old or the new
model, never a half-copied one. Old copies beyond ``keep`` are removed, so a reader that holds
an old path for longer than ``keep`` deploys can lose it — open once, then read.

>>> import pickle, tempfile
>>> from pathlib import Path
>>> from driftwarden.deploy.registry import LocalRegistry
>>> tmp = Path(tempfile.mkdtemp())
>>> art = tmp / "art"; art.mkdir()
>>> _ = (art / "model.pkl").write_bytes(pickle.dumps("model-1"))
>>> v1 = LocalRegistry(tmp / "reg").register("churn", art, {})
>>> target = LocalTarget(tmp / "serving" / "churn")
>>> target.current() is None
True
>>> _ = target.deploy(v1)
>>> target.current(), pickle.loads((target.path / "model.pkl").read_bytes())
('v0001', 'model-1')
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from driftwarden.deploy.files import atomic_write_text, fsync_dir, fsync_tree
from driftwarden.deploy.registry import ModelVersion

VERSION_FILE = "VERSION"
DEPLOYED_FILE = "DEPLOYED.json"
HISTORY_FILE = "history.json"
#: Old copies kept after a switch: readers mid-load keep their files; a rollback is one switch.
DEFAULT_KEEP = 3


@runtime_checkable
class Target(Protocol):
    """What the lifecycle needs from a deploy target."""

    def deploy(self, version: ModelVersion) -> Path: ...

    def current(self) -> str | None: ...


class LocalTarget:
    """Serve from ``path``: a symlink switched atomically between full copies of versions."""

    def __init__(self, path: Path, keep: int = DEFAULT_KEEP) -> None:
        if keep < 0:
            raise ValueError(f"keep must be >= 0 old copies, got {keep!r}")
        self.path = Path(path)
        self.keep = keep
        self.store = self.path.parent / f".{self.path.name}.versions"

    def __repr__(self) -> str:
        return f"LocalTarget(path={str(self.path)!r}, keep={self.keep})"

    def current(self) -> str | None:
        """The deployed version id (from the ``VERSION`` file), or ``None`` before any deploy."""
        try:
            return (self.path / VERSION_FILE).read_text().strip() or None
        except (FileNotFoundError, NotADirectoryError):
            return None

    def history(self) -> list[dict[str, Any]]:
        """Deploys in order: ``[{"dir", "version", "deployed_at"}, ...]``."""
        try:
            return list(json.loads((self.store / HISTORY_FILE).read_text()))
        except FileNotFoundError:
            return []

    def deploy(self, version: ModelVersion) -> Path:
        """Copy ``version`` and switch ``path`` to it; returns the served directory.

        Deploying the version already served changes nothing (idempotent).
        """
        if not (version.path / "model.pkl").is_file():
            raise ValueError(f"{version.model} {version.version} has no model.pkl at {version.path}")
        if self.path.exists() and not self.path.is_symlink():
            raise FileExistsError(f"{self.path} exists and is not a symlink: LocalTarget will not replace it")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.store.mkdir(exist_ok=True)
        with self._locked():
            if self.current() == version.version:
                return self.path.resolve()
            for p in self.store.iterdir():  # leftovers of a crashed deploy (we hold the lock)
                if p.name.startswith(".tmp-"):
                    shutil.rmtree(p, ignore_errors=True)
            name = self._free_name(version.version)
            staging = Path(tempfile.mkdtemp(dir=self.store, prefix=".tmp-"))
            try:
                shutil.copytree(version.path, staging, dirs_exist_ok=True)
                (staging / VERSION_FILE).write_text(version.version + "\n")
                now = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
                (staging / DEPLOYED_FILE).write_text(
                    json.dumps({"model": version.model, "version": version.version, "deployed_at": now})
                )
                fsync_tree(staging)
                os.rename(staging, self.store / name)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            fsync_dir(self.store)
            self._switch(name)
            history = self.history() + [{"dir": name, "version": version.version, "deployed_at": now}]
            history = self._prune(history, serving=name)
            atomic_write_text(self.store / HISTORY_FILE, json.dumps(history, indent=2))
        return self.store / name

    def revert(self, away_from: str) -> str | None:
        """Switch back to the most recent kept copy of a version other than ``away_from``
        (after a deploy of ``away_from`` that the serving side refused). Returns the version
        now served, or ``None`` when no such copy is kept (the serving path is left alone)."""
        with self._locked():
            if self.current() != away_from:
                return self.current()
            for entry in reversed(self.history()):
                if entry["version"] != away_from and (self.store / entry["dir"]).is_dir():
                    self._switch(entry["dir"])
                    now = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
                    history = self.history() + [{**entry, "deployed_at": now, "revert": True}]
                    atomic_write_text(self.store / HISTORY_FILE, json.dumps(history, indent=2))
                    return str(entry["version"])
        return None

    # -- helpers -------------------------------------------------------------------------

    def _switch(self, name: str) -> None:
        for stale in self.path.parent.glob(f".{self.path.name}.link-*"):  # a crashed switch's
            with contextlib.suppress(OSError):
                stale.unlink()
        link = self.path.parent / f".{self.path.name}.link-{uuid.uuid4().hex}"
        os.symlink(os.path.join(self.store.name, name), link, target_is_directory=True)
        try:
            os.replace(link, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(link)
            raise
        fsync_dir(self.path.parent)

    def _free_name(self, version: str) -> str:
        """``v0003`` or, when an older copy of it is still kept, ``v0003~2``, ``v0003~3``…"""
        name, n = version, 1
        while (self.store / name).exists():
            n += 1
            name = f"{version}~{n}"
        return name

    def _prune(self, history: list[dict[str, Any]], serving: str) -> list[dict[str, Any]]:
        """Keep the served copy and the ``keep`` most recent others; delete the rest."""
        old = [h for h in history if h["dir"] != serving]
        keep_dirs = {serving} | {h["dir"] for h in old[len(old) - self.keep :] if self.keep}
        for p in self.store.iterdir():
            if p.is_dir() and not p.name.startswith(".") and p.name not in keep_dirs:
                shutil.rmtree(p, ignore_errors=True)
        return [h for h in history if h["dir"] in keep_dirs]

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.store / ".lock", "a+b") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)


class DeployError(RuntimeError):
    """The serving side refused a deploy; the target switched back (see the message)."""


#: Per call to a model server's reload or health endpoint: a reload loads a model from disk.
DEFAULT_HTTP_TIMEOUT = 10.0


class HttpTarget:
    """A :class:`LocalTarget` plus a model server that must take the new version.

    ``deploy`` switches the serving directory, POSTs ``{"model", "version", "path"}`` (JSON) to
    ``reload_url`` and then GETs ``health_url`` (if given): both must answer 2xx, and when the
    health answer is a JSON object with a ``version``, it must be the deployed one. If any of
    that fails, the directory is switched back to the version served before, the server is
    asked to reload that one (best effort), and :class:`DeployError` is raised — so the
    lifecycle records a failed deploy and never moves the champion alias.

    Deploying the version already switched to repeats the reload and the health check (a
    restart after a crash mid-deploy finishes it).
    """

    def __init__(
        self,
        local: LocalTarget,
        reload_url: str,
        health_url: str | None = None,
        timeout: float = DEFAULT_HTTP_TIMEOUT,
    ) -> None:
        if not reload_url.startswith(("http://", "https://")):
            raise ValueError(f"reload_url must be an http(s) URL, got {reload_url!r}")
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
        self.local, self.reload_url, self.health_url, self.timeout = (
            local,
            reload_url,
            health_url,
            timeout,
        )

    def __repr__(self) -> str:
        return f"HttpTarget({self.local!r}, reload_url={self.reload_url!r})"

    @property
    def path(self) -> Path:
        return self.local.path

    def current(self) -> str | None:
        return self.local.current()

    def revert(self, away_from: str) -> str | None:
        back = self.local.revert(away_from)
        if back is not None:
            with contextlib.suppress(DeployError):
                self._reload(back)
        return back

    def deploy(self, version: ModelVersion) -> Path:
        served = self.local.deploy(version)
        try:
            self._reload(version.version)
            self._health(version.version)
        except DeployError as exc:
            back = self.revert(version.version)
            raise DeployError(
                f"{exc}; switched {self.local.path.name} back to {back or 'nothing (no kept copy)'}"
            ) from None
        return served

    def _reload(self, version: str) -> None:
        body = {"model": self.local.path.name, "version": version, "path": str(self.local.path)}
        status, _ = _http("POST", self.reload_url, body, self.timeout)
        if not 200 <= status < 300:
            raise DeployError(f"reload {self.reload_url} answered {status}")

    def _health(self, version: str) -> None:
        if self.health_url is None:
            return
        status, answer = _http("GET", self.health_url, None, self.timeout)
        if not 200 <= status < 300:
            raise DeployError(f"health {self.health_url} answered {status} after reloading {version}")
        if isinstance(answer, dict) and answer.get("version") not in (None, version):
            raise DeployError(f"health {self.health_url} reports version {answer['version']!r}, not {version!r}")


def _http(method: str, url: str, body: Any, timeout: float) -> tuple[int, Any]:
    """``(status, parsed JSON or None)``; connection failures are :class:`DeployError`."""
    import urllib.error
    import urllib.request

    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - policy URL
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    except (urllib.error.URLError, OSError) as exc:
        raise DeployError(f"{method} {url} failed: {getattr(exc, 'reason', exc)}") from None
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, None
