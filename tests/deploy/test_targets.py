"""LocalTarget: the atomic switch, idempotence, pruning."""

from __future__ import annotations

import os
import pickle
import threading
from pathlib import Path

import pytest
from driftwarden.deploy.registry import LocalRegistry, ModelVersion
from driftwarden.deploy.targets import LocalTarget, Target


@pytest.fixture
def versions(tmp_path: Path) -> list[ModelVersion]:
    reg = LocalRegistry(tmp_path / "reg")
    out = []
    for i in range(1, 5):
        art = tmp_path / f"art{i}"
        art.mkdir()
        # Big enough that a non-atomic copy would be visible half-written.
        (art / "model.pkl").write_bytes(pickle.dumps((f"v000{i}", b"x" * 200_000)))
        out.append(reg.register("churn", art, {}))
    return out


def test_deploy_switches_a_relative_symlink(tmp_path: Path, versions: list[ModelVersion]) -> None:
    target = LocalTarget(tmp_path / "serving" / "churn")
    assert isinstance(target, Target) and target.current() is None
    served = target.deploy(versions[0])
    assert target.path.is_symlink() and not os.path.isabs(os.readlink(target.path))
    assert served == tmp_path / "serving" / ".churn.versions" / "v0001"
    assert target.current() == "v0001"
    assert pickle.loads((target.path / "model.pkl").read_bytes())[0] == "v0001"
    assert (target.path / "metadata.json").exists() and (target.path / "DEPLOYED.json").exists()
    target.deploy(versions[1])
    assert target.current() == "v0002" and [h["version"] for h in target.history()] == [
        "v0001",
        "v0002",
    ]


def test_redeploying_the_served_version_is_a_no_op(tmp_path: Path, versions: list[ModelVersion]) -> None:
    target = LocalTarget(tmp_path / "churn")
    first = target.deploy(versions[0])
    assert target.deploy(versions[0]) == first and len(target.history()) == 1


def test_old_copies_are_pruned_to_keep(tmp_path: Path, versions: list[ModelVersion]) -> None:
    target = LocalTarget(tmp_path / "churn", keep=1)
    for v in versions + [versions[0], versions[1]]:
        target.deploy(v)
    kept = sorted(p.name for p in target.store.iterdir() if not p.name.startswith("."))
    assert kept == ["history.json", "v0001", "v0002"]  # v0002 served, v0001 the one old copy
    assert target.current() == "v0002"
    assert [h["dir"] for h in target.history()] == ["v0001", "v0002"]


def test_a_redeploy_of_a_kept_version_gets_its_own_copy(tmp_path: Path, versions: list[ModelVersion]) -> None:
    target = LocalTarget(tmp_path / "churn", keep=3)
    target.deploy(versions[0])
    target.deploy(versions[1])
    assert target.deploy(versions[0]).name == "v0001~2"  # the old copy is never rewritten
    assert target.current() == "v0001"


def test_refuses_to_replace_a_real_directory(tmp_path: Path, versions: list[ModelVersion]) -> None:
    (tmp_path / "churn").mkdir()
    with pytest.raises(FileExistsError, match="not a symlink"):
        LocalTarget(tmp_path / "churn").deploy(versions[0])


def test_readers_never_see_a_partial_model(tmp_path: Path, versions: list[ModelVersion]) -> None:
    target = LocalTarget(tmp_path / "serving" / "churn", keep=2)
    target.deploy(versions[0])
    stop, errors, seen = threading.Event(), [], set()

    def reader() -> None:
        while not stop.is_set():
            try:
                current = target.current()
                assert current in {v.version for v in versions}
                # One resolve, then both files from the same copy: they must agree.
                served = Path(os.path.realpath(target.path))
                version = (served / "VERSION").read_text().strip()
                name, payload = pickle.loads((served / "model.pkl").read_bytes())
                assert name == version and len(payload) == 200_000
                seen.add(version)
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)
                return

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for i in range(60):
            target.deploy(versions[i % len(versions)])
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert errors == [], errors[:1]
    assert len(seen) >= 2
