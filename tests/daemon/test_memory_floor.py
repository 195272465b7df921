"""The data path loads only the libraries it calls: the 300 MB target with 100 models (bench/throughput.py)
leaves no room for pandas, pyarrow, SciPy's statistics, scikit-learn or CEL's interactive shell,
which River's and CEL's package ``__init__`` files and pyarrow's conversions would import."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

HEAVY = ("pandas", "pyarrow", "scipy.stats._stats_py", "sklearn", "prompt_toolkit", "typer", "river.drift", "evidently")
"""Modules that exist in ``sys.modules`` only once loaded (``scipy.stats`` itself may be a lazy stand-in)."""

SCRIPT = """
import json, sys
sys.path.insert(0, {root!r})
from pathlib import Path
from bench.throughput import POLICY, write_stream
from driftwarden.daemon.config import Settings
from driftwarden.daemon.runtime import Daemon
from driftwarden.daemon.io.sources import FileSource
from driftwarden.policies.loader import load_policy

tmp = Path({tmp!r})
write_stream(tmp / "events.jsonl", 6000)
(tmp / "policy.yaml").write_text(POLICY.format(model="m0"))
policy = load_policy(tmp / "policy.yaml")
first = Daemon(Settings(state_dir=tmp / "state", execute=False), FileSource(tmp / "events.jsonl"), [policy])
first.run(count=9000)  # windows closed, River state, labeled segments written; then stop and restart
first.close()
second = Daemon(Settings(state_dir=tmp / "state", execute=False), FileSource(tmp / "events.jsonl"), [policy])
stats = second.run()
second.close()
print(json.dumps({{"records": first.stats.records + stats.records, "signals": first.stats.signals + stats.signals,
                  "loaded": [m for m in {heavy!r} if m in sys.modules]}}))
"""


def test_monitoring_and_restart_do_not_import_the_heavy_libraries(tmp_path: Path) -> None:
    code = SCRIPT.format(root=str(ROOT), tmp=str(tmp_path), heavy=HEAVY)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["records"] > 11_000
    assert result["signals"] >= 2  # feature_drift and performance windows closed: the statistics ran
    assert result["loaded"] == []


def test_a_leaf_import_leaves_the_package_whole_for_later_imports() -> None:
    code = """
import sys
from driftwarden.detectors.lazy import import_leaf
adwin = import_leaf("river.drift.adwin").ADWIN
assert "river.drift" not in sys.modules and "sklearn" not in sys.modules
import river.drift
from river.drift import binary
print(river.drift.ADWIN is adwin, hasattr(river.drift, "KSWIN"), binary.DDM.__name__)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True", "DDM"]
