"""run_training: real subprocesses, real files."""

from __future__ import annotations

import json
import os
import pickle
import sys
import time
from pathlib import Path

import pytest
from driftwarden.deploy.training import LOG_TAIL_BYTES, fingerprint, run_training

from tests.deploy.trainers import FEATURES, make_data

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "data.parquet"
    make_data(200).to_parquet(path, index=False)
    return path


def _train(data: Path, out: Path, entrypoint: str, timeout: float = 60, **params: object):
    return run_training(data, out, entrypoint=entrypoint, params=params, timeout=timeout, cwd=ROOT)


def _dead(pid: int, within: float = 5.0) -> bool:
    """True when ``pid`` is gone or a zombie (PID 1 in a container may not reap it)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.05)
    return False


def test_entrypoint_trains_pickles_and_describes_the_run(data: Path, tmp_path: Path) -> None:
    result = _train(data, tmp_path / "out", "tests.deploy.trainers:fit_tree")
    assert result.ok, result.log
    assert (result.returncode, result.error, result.temporary) == (0, None, False)
    model = pickle.loads(result.model_path.read_bytes())
    assert list(model.feature_names_in_) == list(FEATURES)  # reserved columns never reach X
    info = json.loads((result.output / "train.json").read_text())
    assert info["rows"] == 200 and info["fingerprint"] == fingerprint(data)
    assert info["duration"] >= 0 and info["features"] == list(FEATURES)
    assert json.loads((result.output / "params.json").read_text()) == {}


def test_trainer_exception_is_permanent_with_traceback_in_log(data: Path, tmp_path: Path) -> None:
    result = _train(data, tmp_path / "out", "tests.deploy.trainers:fit_raises")
    assert not result.ok and not result.temporary and result.returncode == 1
    assert "boom: the trainer is broken" in str(result.error)
    assert "Traceback" in result.log and "ValueError" in result.log
    assert not result.model_path.exists()


@pytest.mark.parametrize(
    ("entrypoint", "expected"),
    [
        ("tests.deploy.no_such_module:fit", "import"),
        ("tests.deploy.trainers:no_such_function", "has no attribute"),
        ("tests.deploy.trainers:fit_no_predict", "no predict()"),
        ("tests.deploy.trainers", "module:function"),
    ],
)
def test_bad_entrypoints_are_permanent(data: Path, tmp_path: Path, entrypoint: str, expected: str) -> None:
    result = _train(data, tmp_path / "out", entrypoint)
    assert not result.ok and not result.temporary
    assert expected in str(result.error)


def test_exit_75_is_temporary(data: Path, tmp_path: Path) -> None:
    counter = tmp_path / "count"
    result = _train(
        data,
        tmp_path / "out",
        "tests.deploy.trainers:fit_tempfail",
        counter=str(counter),
        fail_times=1,
    )
    assert (result.ok, result.returncode, result.temporary) == (False, 75, True)
    assert "EX_TEMPFAIL" in str(result.error) and "asking for a retry" in result.log


def test_timeout_kills_the_whole_process_group(data: Path, tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    # The trainer must get as far as starting its child before the timeout: on a loaded machine its imports
    # alone can take longer than 4 s, so the timeout doubles until it does (4 s on an idle machine).
    for timeout in (4, 8, 16):
        started = time.monotonic()
        result = _train(
            data,
            tmp_path / f"out-{timeout}",
            "tests.deploy.trainers:fit_sleeps",
            timeout=timeout,
            pid_file=str(pid_file),
        )
        assert time.monotonic() - started < timeout + 11
        assert not result.ok and result.temporary and f"timed out after {timeout} s" in str(result.error)
        if pid_file.exists():
            break
    assert pid_file.exists(), result.log
    assert _dead(int(pid_file.read_text())), "the trainer's child outlived the timeout"


def test_shell_command_timeout_kills_grandchildren(data: Path, tmp_path: Path) -> None:
    cmd = "sleep 60 & echo $! > {output}/child.pid; wait"
    result = run_training(data, tmp_path / "o u t", command=cmd, timeout=0.5)
    assert result.temporary and "timed out" in str(result.error)
    assert _dead(int((tmp_path / "o u t" / "child.pid").read_text()))


def test_killed_by_sigkill_is_temporary(data: Path, tmp_path: Path) -> None:
    cmd = [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"]
    result = run_training(data, tmp_path / "out", command=cmd, timeout=30)
    assert result.returncode == -9 and result.temporary and "SIGKILL" in str(result.error)


def test_command_without_model_is_permanent(data: Path, tmp_path: Path) -> None:
    result = run_training(data, tmp_path / "out", command=["true"], timeout=30)
    assert result.returncode == 0 and not result.ok and not result.temporary
    assert "wrote no model.pkl" in str(result.error)


def test_command_placeholders_and_train_json(data: Path, tmp_path: Path) -> None:
    ref = tmp_path / "ref.parquet"
    ref.write_bytes(b"ref")
    code = (
        "import os, pickle, sys; assert sys.argv[2] == os.environ['DRIFTWARDEN_REFERENCE'];"
        "pickle.dump(sys.argv[1], open(os.path.join(sys.argv[3], 'model.pkl'), 'wb'))"
    )
    result = run_training(
        data,
        tmp_path / "out",
        timeout=30,
        reference=ref,
        command=[sys.executable, "-c", code, "{data}", "{reference}", "{output}"],
    )
    assert result.ok, result.log
    assert pickle.loads(result.model_path.read_bytes()) == str(data)
    info = json.loads((result.output / "train.json").read_text())
    assert info["rows"] == 200 and info["fingerprint"] == fingerprint(data)


def test_stale_model_is_removed_before_a_run(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.pkl").write_bytes(b"stale")
    assert not run_training(data, out, command=["true"], timeout=30).ok


def test_log_tail_is_bounded(data: Path, tmp_path: Path) -> None:
    cmd = [sys.executable, "-c", "print('x' * 200_000); print('the end')"]
    result = run_training(data, tmp_path / "out", command=cmd, timeout=30)
    assert len(result.log) <= LOG_TAIL_BYTES + 1 and result.log.rstrip().endswith("the end")
    assert (result.output / "train.log").stat().st_size > 200_000


def test_missing_data_and_unknown_command_fail_permanently(tmp_path: Path) -> None:
    missing = run_training(tmp_path / "nope.parquet", tmp_path / "a", command=["true"], timeout=5)
    assert not missing.ok and not missing.temporary and "not found" in str(missing.error)
    (tmp_path / "d").write_bytes(b"")
    unknown = run_training(tmp_path / "d", tmp_path / "b", command=["/no/such/bin"], timeout=5)
    assert not unknown.ok and not unknown.temporary and "cannot start" in str(unknown.error)


def test_wrong_calls_raise(data: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        run_training(data, tmp_path, timeout=1)
    with pytest.raises(ValueError, match="exactly one"):
        run_training(data, tmp_path, entrypoint="a:b", command=["true"], timeout=1)
    with pytest.raises(ValueError, match="timeout"):
        run_training(data, tmp_path, command=["true"], timeout=0)
    with pytest.raises(ValueError, match="reference"):
        run_training(data, tmp_path, command=["x", "{reference}"], timeout=1)


def test_fingerprint_changes_with_content(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"1" * 3_000_000)
    b.write_bytes(b"1" * 2_999_999 + b"2")
    assert fingerprint(a) != fingerprint(b) and len(fingerprint(a)) == 64
    assert os.path.getsize(a) == os.path.getsize(b)


CALLER = """\
import sys
from pathlib import Path
from driftwarden.deploy.training import run_training
run_training(Path(sys.argv[1]), Path(sys.argv[2]), command=sys.argv[4], timeout=float(sys.argv[3]))
"""


def _orphan(data: Path, out: Path, command: str, timeout: float) -> dict[str, object]:
    """Launch a trainer from a caller process, then SIGKILL the caller: the trainer is left running, as a
    SIGKILLed daemon leaves it. Returns what train.pid says of it."""
    import signal
    import subprocess

    caller = subprocess.Popen([sys.executable, "-c", CALLER, str(data), str(out), str(timeout), command], cwd=ROOT)
    deadline = time.monotonic() + 30
    while not (out / "train.pid").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(caller.pid, signal.SIGKILL)
    caller.wait()
    return json.loads((out / "train.pid").read_text())


def test_a_trainer_whose_caller_died_is_adopted_when_it_ends(data: Path, tmp_path: Path) -> None:
    from driftwarden.deploy.training import resume_training

    model = tmp_path / "m.pkl"
    model.write_bytes(pickle.dumps(42))
    out = tmp_path / "out"
    trainer = _orphan(data, out, f"sleep 1.5; cp {model} {{output}}/model.pkl", timeout=60)
    assert not _dead(int(trainer["pid"]), within=0.2)  # it outlived its caller
    result = resume_training(data, out, command=True)
    assert result is not None and result.ok and result.adopted and result.returncode == 0, result
    assert pickle.loads(result.model_path.read_bytes()) == 42
    assert json.loads((out / "train.json").read_text())["fingerprint"] == fingerprint(data)
    assert _dead(int(trainer["pid"])) and not (out / "train.pid").exists()
    assert resume_training(data, tmp_path / "never-launched", command=True) is None


def test_an_adopted_trainer_past_its_deadline_is_killed_as_timed_out(data: Path, tmp_path: Path) -> None:
    from driftwarden.deploy.training import resume_training

    out = tmp_path / "out"
    trainer = _orphan(data, out, "sleep 60", timeout=2)
    started = time.monotonic()
    result = resume_training(data, out, command=True)
    assert time.monotonic() - started < 10
    assert result is not None and not result.ok and result.temporary and "timed out after 2 s" in str(result.error)
    assert _dead(int(trainer["pid"]))
