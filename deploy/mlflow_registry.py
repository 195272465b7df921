"""The :class:`~driftwarden.deploy.registry.Registry` on MLflow's model registry (the ``mlflow`` extra).

The one module of ours that imports MLflow. Everything it returns is our own
:class:`~driftwarden.deploy.registry.ModelVersion`, with version ids ``v0001``… as in the local registry
(MLflow's version ``3`` is our ``v0003``), so the lifecycle, the deploy targets and the CLI
work the same on either.

One registration is one MLflow run in the experiment ``driftwarden/<model>``: the artifact
directory (``model.pkl``, ``train.json``…) plus our ``metadata.json`` are logged under
``model/``, the candidate's metrics as run metrics, and the model version is created from
that artifact path, tagged with its lineage (decision, rule, parent). Aliases are MLflow
aliases (``champion``, ``challenger``, ``previous``, ``rolled_back``).

A local tracking store (``sqlite:///path/mlflow.db``) keeps artifacts next to the database
(``<db dir>/mlflow-artifacts``) unless ``artifacts`` says otherwise; a version's ``path`` is
then the artifact directory itself. For remote artifact stores the version is downloaded once
into ``cache``.

Loading unpickles: only register artifacts you trust.
"""

from __future__ import annotations

import datetime as dt
import json
import pickle
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from driftwarden.deploy.registry import (
    CHALLENGER,
    CHAMPION,
    METADATA_FILE,
    PREVIOUS,
    ModelVersion,
    check_name,
    metadata_text,
    version_id,
    version_number,
)
from driftwarden.deploy.training import MODEL_FILE

EXPERIMENT_PREFIX = "driftwarden/"
ARTIFACT_PATH = "model"
#: Lineage fields copied to model version tags (searchable in the MLflow UI); tag values are
#: bounded, so the full metadata lives in the ``metadata.json`` artifact.
TAGGED = ("decision", "rule", "policy", "parent", "previous_champion")
#: MLflow rejects longer tag values.
MAX_TAG = 5000
_PAGE = 200


class MlflowRegistry:
    """A registry on MLflow's model registry at ``tracking_uri``."""

    def __init__(
        self,
        tracking_uri: str,
        *,
        artifacts: str | Path | None = None,
        cache: str | Path | None = None,
    ) -> None:
        try:  # imported here: without the extra, the module still imports (and documents itself)
            from mlflow import MlflowClient
            from mlflow.exceptions import MlflowException
        except ImportError as e:
            raise ImportError(f"MlflowRegistry needs MLflow: pip install 'driftwarden[mlflow]' ({e})") from e
        self._error: type[Exception] = MlflowException
        self.uri = tracking_uri
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        db = _sqlite_path(tracking_uri)
        if artifacts is None and db is not None:
            artifacts = db.parent / "mlflow-artifacts"
        self.artifacts = None if artifacts is None else str(artifacts)
        self.cache = Path(cache) if cache else Path(tempfile.gettempdir()) / "driftwarden-mlflow"
        self._moves = threading.Lock()

    def __repr__(self) -> str:
        return f"MlflowRegistry({self.uri!r})"

    # -- reading -------------------------------------------------------------------------

    def models(self) -> list[str]:
        names: list[str] = []
        token = None
        while True:
            page = self.client.search_registered_models(max_results=_PAGE, page_token=token)
            names += [m.name for m in page]
            token = page.token
            if not token:
                return sorted(names)

    def versions(self, model: str) -> list[ModelVersion]:
        """All versions of ``model``, oldest first."""
        check_name(model, "model")
        found: list[Any] = []
        token = None
        while True:
            page = self.client.search_model_versions(f"name = '{model}'", max_results=_PAGE, page_token=token)
            found += list(page)
            token = page.token
            if not token:
                break
        return [self._version(mv) for mv in sorted(found, key=lambda mv: int(mv.version))]

    def get(self, model: str, version: str) -> ModelVersion:
        """One version; ``KeyError`` when it does not exist."""
        check_name(model, "model")
        number = version_number(version)
        try:
            mv = self.client.get_model_version(model, str(number))
        except self._error:
            raise KeyError(f"model {model!r} has no version {version!r}") from None
        return self._version(mv)

    def aliases(self, model: str) -> dict[str, str]:
        try:
            registered = self.client.get_registered_model(model)
        except self._error:
            return {}
        return {str(k): version_id(int(v)) for k, v in (registered.aliases or {}).items()}

    def alias(self, model: str, name: str) -> ModelVersion | None:
        version = self.aliases(model).get(name)
        return None if version is None else self.get(model, version)

    def load(self, model: str, version: str) -> Any:
        with open(self.get(model, version).model_path, "rb") as f:
            return pickle.load(f)

    # -- writing -------------------------------------------------------------------------

    def register(self, model: str, artifact_dir: Path, metadata: Mapping[str, Any]) -> ModelVersion:
        """Log ``artifact_dir`` (must hold ``model.pkl``) as a run and register it as the next
        version of ``model``; metadata as in :meth:`driftwarden.deploy.registry.LocalRegistry.register`."""
        check_name(model, "model")
        artifact_dir = Path(artifact_dir)
        if not (artifact_dir / MODEL_FILE).is_file():
            raise ValueError(f"artifact_dir {artifact_dir} has no {MODEL_FILE}")
        self._ensure_model(model)
        meta: dict[str, Any] = {"parent": self.aliases(model).get(CHAMPION)}
        meta.update(metadata)
        meta.update(model=model, created=dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"))
        text = metadata_text(meta)

        run = self.client.create_run(self._experiment(model), run_name=f"{model}-register")
        run_id = run.info.run_id
        try:
            self.client.log_artifacts(run_id, str(artifact_dir), ARTIFACT_PATH)
            self.client.log_text(run_id, text, f"{ARTIFACT_PATH}/{METADATA_FILE}")
            for name, value in (meta.get("metrics") or {}).items():
                self.client.log_metric(run_id, str(name), float(value))
        except BaseException:
            self.client.set_terminated(run_id, status="FAILED")
            raise
        self.client.set_terminated(run_id)
        tags = {f"driftwarden.{k}": str(meta[k])[:MAX_TAG] for k in TAGGED if meta.get(k) is not None}
        mv = self.client.create_model_version(
            model, source=f"{run.info.artifact_uri}/{ARTIFACT_PATH}", run_id=run_id, tags=tags
        )
        return self.get(model, version_id(int(mv.version)))

    def set_alias(self, model: str, name: str, version: str | None) -> None:
        """Point alias ``name`` at ``version`` (which must exist); ``None`` removes it."""
        check_name(name, "alias")
        if version is None:
            if name in self.aliases(model):
                self.client.delete_registered_model_alias(model, name)
            return
        self.get(model, version)
        self.client.set_registered_model_alias(model, name, str(version_number(version)))

    def move_champion(self, model: str, version: str, expected: str | None) -> bool:
        """Compare-and-swap of the champion, as
        :meth:`driftwarden.deploy.registry.LocalRegistry.move_champion`. MLflow has no conditional
        alias update: the check and the moves are serialized within this process only (one
        daemon per state folder holds the registry's writers)."""
        self.get(model, version)
        with self._moves:
            aliases = self.aliases(model)
            current = aliases.get(CHAMPION)
            if current == version:
                return True
            if current != expected:
                return False
            if expected is not None:
                self.set_alias(model, PREVIOUS, expected)
            self.set_alias(model, CHAMPION, version)
            if aliases.get(CHALLENGER) == version:
                self.set_alias(model, CHALLENGER, None)
            return True

    # -- helpers -------------------------------------------------------------------------

    def _ensure_model(self, model: str) -> None:
        try:
            self.client.get_registered_model(model)
        except self._error:
            try:
                self.client.create_registered_model(model, description="registered by driftwarden")
            except self._error:  # created concurrently
                self.client.get_registered_model(model)

    def _experiment(self, model: str) -> str:
        name = EXPERIMENT_PREFIX + model
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return str(found.experiment_id)
        location = None if self.artifacts is None else _as_uri(self.artifacts, model)
        try:
            return str(self.client.create_experiment(name, artifact_location=location))
        except self._error:  # created concurrently
            found = self.client.get_experiment_by_name(name)
            assert found is not None
            return str(found.experiment_id)

    def _version(self, mv: Any) -> ModelVersion:
        version = version_id(int(mv.version))
        path = self._local(mv.name, version, mv.source)
        try:
            metadata = json.loads((path / METADATA_FILE).read_text())
        except FileNotFoundError:
            metadata = {}
        metadata.update(model=mv.name, version=version)
        return ModelVersion(model=mv.name, version=version, path=path, metadata=metadata)

    def _local(self, model: str, version: str, source: str) -> Path:
        """A local directory holding the version's artifacts (downloaded once if remote)."""
        parsed = urlparse(source)
        if parsed.scheme in ("", "file"):
            return Path(unquote(parsed.path))
        target = self.cache / model / version
        if not (target / MODEL_FILE).is_file():
            import mlflow.artifacts

            target.mkdir(parents=True, exist_ok=True)
            mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=str(target))
            nested = target / ARTIFACT_PATH
            if nested.is_dir():
                return nested
        return target


def _sqlite_path(uri: str) -> Path | None:
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri.removeprefix("sqlite:///")).absolute()


def _as_uri(root: str, model: str) -> str:
    if "://" in root:
        return f"{root.rstrip('/')}/{model}"
    return (Path(root).absolute() / model).as_uri()
