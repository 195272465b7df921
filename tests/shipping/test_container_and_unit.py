"""The Dockerfile (no container engine here: hadolint, and what the image promises, read from the file) and the
systemd unit (`systemd-analyze verify`, and its hardening)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT
from tests.shipping.tools import system_tool, venv_tool

DOCKERFILE = ROOT / "Dockerfile"
UNIT = ROOT / "deploy" / "systemd" / "driftwarden.service"
BOUNDED_STOP_SECONDS = 30
"""The daemon's bounded stop after SIGTERM: systemd's TimeoutStopSec and the chart's grace period match it."""


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_hadolint_accepts_the_dockerfile() -> None:
    done = subprocess.run(
        [venv_tool("hadolint"), "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_image_is_multi_stage_slim_non_root_with_a_state_volume_and_a_healthcheck() -> None:
    steps = _instructions(DOCKERFILE.read_text())
    froms = [args for word, args in steps if word == "FROM"]
    assert len(froms) >= 2 and froms[0].endswith("AS build")
    base = next(args for word, args in steps if word == "ARG" and args.startswith("PYTHON_IMAGE="))
    assert "slim" in base and "python:3.11" in base
    assert any(word == "COPY" and args.startswith("--from=build") for word, args in steps)
    final = steps[max(i for i, (word, _) in enumerate(steps) if word == "FROM") :]
    user = [args for word, args in final if word == "USER"]
    assert user and user[-1].split(":")[0] not in ("0", "root")
    assert ("VOLUME", '["/var/lib/driftwarden"]') in final
    assert ("EXPOSE", "8080") in final
    env = " ".join(args for word, args in final if word == "ENV")
    assert "DRIFTWARDEN_STATE_DIR=/var/lib/driftwarden" in env and "DRIFTWARDEN_HTTP__LISTEN=0.0.0.0:8080" in env
    (health,) = [args for word, args in final if word == "HEALTHCHECK"]
    assert "http://127.0.0.1:8080/livez" in health
    cmd = next(args for word, args in final if word == "CMD")
    assert "/etc/driftwarden/config.yaml" in cmd  # the mounted config
    # Everything the wheel needs is copied in, and nothing the image does not need is sent to the builder.
    copied = {args.split()[0] for word, args in steps if word == "COPY" and not args.startswith("--from")}
    assert {"daemon", "detectors", "policies", "deploy", "examples", "pyproject.toml"} <= copied
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", "tests"} <= set(ignored)


def test_the_healthcheck_command_is_valid_python() -> None:
    health = next(args for word, args in _instructions(DOCKERFILE.read_text()) if word == "HEALTHCHECK")
    code = re.search(r'"-c", "(.*)"\]$', health)
    assert code is not None
    compile(code.group(1), "HEALTHCHECK", "exec")


def test_systemd_verifies_the_unit(tmp_path: Path) -> None:
    analyze = system_tool("systemd-analyze")
    # verify checks that ExecStart exists: point it at this environment's driftwarden.
    exe = Path(sys.executable).parent / "driftwarden"
    unit = tmp_path / "driftwarden.service"
    unit.write_text(UNIT.read_text().replace("/opt/driftwarden/bin/driftwarden", str(exe)))
    done = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    problems = [line for line in (done.stdout + done.stderr).splitlines() if "driftwarden.service" in line]
    assert done.returncode == 0 and not problems, done.stdout + done.stderr


def test_the_unit_is_hardened_and_stops_within_the_bounded_stop() -> None:
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "StateDirectory": "driftwarden",
        "KillSignal": "SIGTERM",
        "TimeoutStopSec": str(BOUNDED_STOP_SECONDS),
    }.items():
        assert settings.get(key) == [value], key
    assert settings["CapabilityBoundingSet"] == [""]
    assert "DRIFTWARDEN_STATE_DIR=/var/lib/driftwarden" in settings["Environment"]
    assert settings["ExecStart"][0].split()[1:3] == ["run", "--config"]
    assert settings["RestartPreventExitStatus"] == ["2"]  # a refused config or policy: a restart will not fix it
