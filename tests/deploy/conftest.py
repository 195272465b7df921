"""Registries for the lifecycle suite: every test that takes ``registry`` runs against the
local directory registry and against MLflow's model registry (real MLflow, SQLite backend)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session")
def mlflow_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty MLflow database with its schema, made once (the migrations take seconds)."""
    pytest.importorskip("mlflow", reason="the mlflow extra is not installed")
    from driftwarden.deploy.mlflow_registry import MlflowRegistry

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowRegistry(f"sqlite:///{path}").models()
    return path


@pytest.fixture(params=["local", "mlflow"])
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "local":
        from driftwarden.deploy.registry import LocalRegistry

        return LocalRegistry(tmp_path / "registry")
    from driftwarden.deploy.mlflow_registry import MlflowRegistry

    db = tmp_path / "mlflow" / "mlflow.db"
    db.parent.mkdir()
    shutil.copy(request.getfixturevalue("mlflow_db"), db)
    return MlflowRegistry(f"sqlite:///{db}")
