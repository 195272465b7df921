"""The tools the shipping tests drive: Helm (built by .ci/install-helm into a cache folder), hadolint (a dev
dependency: its wheel ships the binary), systemd-analyze, promtool and prometheus (Debian packages,
.ci/install-test-tools)."""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from pathlib import Path

import pytest

HELM_VERSION = "v3.22.0"
"""The pinned Helm; .ci/install-helm builds the same version (keep the two equal)."""


def _missing(tool: str, how: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{tool} is not installed: {how} should have installed it")
    pytest.skip(f"{tool} is not installed ({how})")


def helm() -> str:
    tools = os.environ.get("DRIFTWARDEN_TOOLS") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "driftwarden" / "tools"
    )
    path = Path(tools) / f"helm-{HELM_VERSION}" / "helm"
    if not path.exists():
        _missing("helm", "bash .ci/install-helm")
    return str(path)


def venv_tool(name: str) -> str:
    """A console tool installed with the dev extra (next to this Python, or on PATH)."""
    for folder in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        candidate = Path(folder) / name
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        _missing(name, "pip install -e '.[dev]'")
    assert found is not None
    return found


def system_tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        _missing(name, "bash .ci/install-test-tools")
    assert found is not None
    return found
