"""Issue 13 item 10: ``dead_letters.count`` in a model's policy counts that model's bad records only;
the whole stream's count is ``dead_letters.stream``."""

from __future__ import annotations

from pathlib import Path

import orjson
from driftwarden.daemon.config import Settings
from driftwarden.daemon.io.sources import MemorySource
from driftwarden.daemon.runtime import Daemon
from driftwarden.policies.loader import load_policy

POLICY = """\
version: 1
model: {model}
monitors:
  perf: {{kind: performance, metric: accuracy, window: {{events: 10}}, threshold: 0.1}}
rules:
  - {{name: bad-input, when: "dead_letters.count >= 3", cooldown: 1000h, do: alert}}
  - {{name: bad-stream, when: "dead_letters.stream >= 6", cooldown: 1000h, do: alert}}
"""


def _good(model: str, i: int) -> bytes:
    return orjson.dumps({"model": model, "id": i, "ts": i, "prediction": 1, "label": 1})


def _stream() -> list[bytes]:
    """40 good events of each of a and b; bad records: 3 naming a, 1 naming b, 2 naming no model."""
    records = [r for i in range(20) for r in (_good("a", i), _good("b", i))]
    bad = [
        b'{"model": "a", "id": "x", "features": [1]}',  # decodes, names a, breaks the contract
        b'{"model": "a", "id": true, "prediction": 1}',
        b'{"model": "b", "id": "y", "prediction": [1]}',
        b"{not json",  # no model can be read
        b'{"id": "z", "prediction": 1}',
        b'{"model": "a", "prediction": 1}',  # missing id, still names a
    ]
    for n, raw in enumerate(bad):
        records.insert(5 + 5 * n, raw)
    return records + [r for i in range(20, 40) for r in (_good("a", i), _good("b", i))]


def _daemon(tmp_path: Path, records: list[bytes]) -> Daemon:
    policies = []
    for model in ("a", "b"):
        path = tmp_path / f"{model}.yaml"
        path.write_text(POLICY.format(model=model))
        policies.append(load_policy(path))
    return Daemon(Settings(state_dir=tmp_path / "state", execute=False, batch_size=8), MemorySource(records), policies)


def test_each_model_counts_its_own_dead_letters_and_every_policy_sees_the_stream(tmp_path: Path) -> None:
    records = _stream()
    decisions: list[dict] = []
    daemon = _daemon(tmp_path, records)
    daemon.listener = lambda item: decisions.append(item) if item["type"] == "decision" else None
    stats = daemon.run()
    counts = {m: p.engine.context()["dead_letters"] for m, p in daemon.pipelines.items()}
    daemon.close()
    assert stats.dead_letters == 6
    assert counts == {"a": {"count": 3, "stream": 6}, "b": {"count": 1, "stream": 6}}
    # a's own count reaches 3 (b's stays 1: it never decides bad-input); both see the stream's 6.
    assert sorted((d["model"], d["rule"]) for d in decisions) == [
        ("a", "bad-input"),
        ("a", "bad-stream"),
        ("b", "bad-stream"),
    ]


def test_the_counts_survive_a_restart(tmp_path: Path) -> None:
    records = _stream()
    first = _daemon(tmp_path, records)
    first.run(count=len(records) // 2)
    first.close()
    second = _daemon(tmp_path, records)
    second.run()
    counts = {m: p.engine.context()["dead_letters"] for m, p in second.pipelines.items()}
    second.close()
    assert counts == {"a": {"count": 3, "stream": 6}, "b": {"count": 1, "stream": 6}}
