"""LocalRegistry: layout, versions, aliases, atomicity."""

from __future__ import annotations

import json
import pickle
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from driftwarden.deploy.registry import LocalRegistry, ModelVersion, Registry


def artifact(tmp_path: Path, payload: object, name: str = "art") -> Path:
    path = tmp_path / name
    path.mkdir(exist_ok=True)
    (path / "model.pkl").write_bytes(pickle.dumps(payload))
    (path / "train.json").write_text("{}")
    return path


def test_layout_versions_metadata(tmp_path: Path) -> None:
    reg = LocalRegistry(tmp_path / "reg")
    assert isinstance(reg, Registry) and reg.versions("churn") == [] and reg.models() == []
    v1 = reg.register("churn", artifact(tmp_path, "m1"), {"policy": "p", "f1": np.float64(0.5)})
    v2 = reg.register("churn", artifact(tmp_path, "m2"), {"parent": "v0001", "path": tmp_path})
    assert isinstance(v1, ModelVersion) and (v1.version, v2.version) == ("v0001", "v0002")
    assert v1.path == tmp_path / "reg" / "churn" / "versions" / "v0001"
    assert sorted(p.name for p in v1.path.iterdir()) == ["metadata.json", "model.pkl", "train.json"]
    meta = json.loads((v1.path / "metadata.json").read_text())
    assert meta["policy"] == "p" and meta["f1"] == 0.5 and meta["parent"] is None
    assert meta["model"] == "churn" and meta["version"] == "v0001" and "T" in meta["created"]
    assert v2.metadata["parent"] == "v0001" and v2.metadata["path"] == str(tmp_path)
    assert [v.version for v in reg.versions("churn")] == ["v0001", "v0002"]
    assert reg.load("churn", "v0002") == "m2" and reg.models() == ["churn"]


def test_aliases(tmp_path: Path) -> None:
    reg = LocalRegistry(tmp_path)
    v1 = reg.register("m", artifact(tmp_path, "m1"), {})
    assert reg.alias("m", "champion") is None
    reg.set_alias("m", "champion", v1.version)
    v2 = reg.register("m", v1.path, {})
    assert v2.metadata["parent"] == "v0001"  # the champion at registration
    reg.set_alias("m", "previous", "v0001")
    reg.set_alias("m", "champion", "v0002")
    assert json.loads((tmp_path / "m" / "aliases.json").read_text()) == {
        "champion": "v0002",
        "previous": "v0001",
    }
    assert reg.alias("m", "champion") == v2
    reg.set_alias("m", "previous", None)
    assert reg.aliases("m") == {"champion": "v0002"}
    with pytest.raises(KeyError, match="v0009"):
        reg.set_alias("m", "champion", "v0009")
    assert reg.aliases("m") == {"champion": "v0002"}


def test_bad_names_and_missing_things(tmp_path: Path) -> None:
    reg = LocalRegistry(tmp_path)
    for bad in ("../x", "", "a/b", ".hidden"):
        with pytest.raises(ValueError, match="not allowed"):
            reg.versions(bad)
    with pytest.raises(ValueError, match="v0001"):
        reg.get("m", "3")
    with pytest.raises(KeyError):
        reg.get("m", "v0001")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="model.pkl"):
        reg.register("m", tmp_path / "empty", {})
    with pytest.raises(TypeError, match="not JSON-serializable"):
        reg.register("m", artifact(tmp_path, 1), {"x": object()})
    assert reg.versions("m") == []  # the failed registration left nothing behind


def test_concurrent_registrations_get_distinct_versions(tmp_path: Path) -> None:
    reg = LocalRegistry(tmp_path / "reg")
    art = artifact(tmp_path, "m")
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda i: reg.register("m", art, {"i": i}).version, range(12)))
    assert sorted(got) == [f"v{n:04d}" for n in range(1, 13)]
    assert sorted(v.metadata["i"] for v in reg.versions("m")) == list(range(12))


def test_alias_file_is_never_seen_half_written(tmp_path: Path) -> None:
    reg = LocalRegistry(tmp_path)
    art = artifact(tmp_path, "m")
    versions = [reg.register("m", art, {}).version for _ in range(3)]
    reg.set_alias("m", "champion", versions[0])
    stop, errors, reads = threading.Event(), [], [0]

    def reader() -> None:
        while not stop.is_set():
            try:
                aliases = json.loads((tmp_path / "m" / "aliases.json").read_text())
                assert aliases["champion"] in versions and set(aliases) <= {"champion", "previous"}
                assert reg.alias("m", "champion") is not None
                reads[0] += 1
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)
                return

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(100):
            reg.set_alias("m", "champion", versions[i % 3])
            reg.set_alias("m", "previous", versions[(i + 1) % 3])
    finally:
        stop.set()
        thread.join()
    assert errors == [] and reads[0] > 0
    assert not [p for p in (tmp_path / "m").iterdir() if p.name.endswith(".tmp")]


def test_partial_copies_of_a_killed_registration_are_removed_at_start_up(tmp_path: Path) -> None:
    """A kill during registration leaves a staging folder in versions/; the daemon's start removes it at once
    (before, it stayed until the next registration of that model)."""
    from driftwarden.daemon.config import Settings
    from driftwarden.daemon.io.sources import MemorySource
    from driftwarden.daemon.runtime import Daemon
    from driftwarden.policies.loader import load_policy

    settings = Settings(state_dir=tmp_path / "state", execute=False)
    reg = LocalRegistry(Path(settings.registry_location))
    reg.register("m", artifact(tmp_path, {"w": 1}), {})
    partial = Path(settings.registry_location) / "m" / "versions" / ".tmp-killed"
    partial.mkdir()
    (partial / "model.pkl").write_bytes(b"\0" * 1_000_000)
    policy = tmp_path / "p.yaml"
    policy.write_text("version: 1\nmodel: m\nmonitors:\n  e: {kind: adwin, series: error}\n")
    daemon = Daemon(settings, MemorySource([]), [load_policy(policy)])
    daemon.close()
    assert not partial.exists()
    assert [v.version for v in reg.versions("m")] == ["v0001"], "complete versions are kept"
