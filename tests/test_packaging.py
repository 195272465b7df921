"""The wheel installs one top-level name, ``driftwarden``, and works outside the checkout."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOPS = ("daemon", "detectors", "policies", "deploy", "examples")


def test_every_package_folder_is_in_the_wheel_list() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {
        "driftwarden." + ".".join(p.parent.relative_to(ROOT).parts)
        for top in TOPS
        for p in (ROOT / top).rglob("__init__.py")
    }
    assert folders - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"
    assert listed - folders == set()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return next(out.glob("driftwarden-*.whl"))


def test_the_wheel_has_one_top_level_name(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"driftwarden"}
    assert "driftwarden/daemon/cli/__main__.py" in names
    assert "driftwarden/examples/credit/policy.yaml" in names
    meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
    text = zipfile.ZipFile(wheel).read(meta).decode()
    assert "License-Expression: Apache-2.0" in text and "Project-URL" in text and "Classifier" in text
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)


def test_installed_non_editable_it_runs_outside_the_checkout(wheel: Path, tmp_path: Path) -> None:
    """A fresh virtual environment that sees this one's dependencies, the wheel installed into it, run from an
    empty folder: ``--version``, ``validate`` and the in-process demo work without the checkout."""
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(system_site_packages=False, with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    # The dependencies come from this environment (no network needed); the package itself only from the wheel.
    site = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    deps = [p for p in sys.path if p.endswith("site-packages")]
    Path(site, "deps.pth").write_text("\n".join(deps) + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", site, str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    exe = env_dir / "bin" / "driftwarden"
    exe.write_text(f"#!{py}\nfrom driftwarden.daemon.cli import main\nmain()\n")
    exe.chmod(0o755)

    where = subprocess.run(
        [str(py), "-c", "import driftwarden.daemon as d; print(d.__file__)"],
        cwd=empty,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert where.startswith(site), where  # the wheel's copy, not the checkout's
    version = subprocess.run([str(exe), "--version"], cwd=empty, env=env, capture_output=True, text=True)
    assert version.returncode == 0 and "driftwarden, version" in version.stdout
    policy = (ROOT / "examples" / "credit" / "policy.yaml").read_text()
    (empty / "policy.yaml").write_text(policy)
    ok = subprocess.run([str(exe), "validate", "policy.yaml"], cwd=empty, env=env, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    demo = subprocess.run(
        # A short stream (the lifecycle's own tests run the full one): it still drifts, retrains and deploys.
        [str(exe), "demo", "--in-process", "--json", "--predictions", "4000", "--drift-at", "2000"]
        + ["--out", str(tmp_path / "out")],
        cwd=empty,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert demo.returncode == 0, demo.stdout[-2000:] + demo.stderr[-2000:]
    assert '"type":"summary"' in demo.stdout and '"deployed_version":"v0002"' in demo.stdout
