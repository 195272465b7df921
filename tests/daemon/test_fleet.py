"""Fleet policies in a real Daemon: one ``models:`` glob for many models behaves exactly as one
policy file per model; new models are admitted as they appear; precedence, ``where:`` and restarts."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from click.testing import CliRunner
from driftwarden.daemon.cli import main
from driftwarden.daemon.config import Settings
from driftwarden.daemon.io.sources import MemorySource
from driftwarden.daemon.runtime import Daemon
from driftwarden.daemon.state.store import Store
from driftwarden.policies.loader import PolicyLoadError, load_policy

T0 = 1_700_000_000.0

BODY = """\
monitors:
  shift: {kind: page_hinkley, series: x, min_instances: 5, threshold: 4}
  perf: {kind: performance, window: {events: 8}, threshold: 0.7}
  inputs: {kind: feature_drift, features: all, method: psi, window: {events: 8}}
rules:
  - {name: degraded, when: "perf.drift", do: alert}
  - {name: shifting, when: "shift.drift || inputs.drift", for: 2 windows, do: alert}
"""


def fleet_stream(models: int, per_model: int, seed: int = 1, prefix: str = "shop-") -> list[bytes]:
    """Each model's predictions (x shifts and errors grow in its second half, by a model-specific
    amount) with the label in the event, all models interleaved at random."""
    rng = np.random.default_rng(seed)
    events: list[tuple[float, bytes]] = []
    for m in range(models):
        name = f"{prefix}{m:04d}"
        shift, wrong = rng.uniform(0, 4), rng.uniform(0, 0.6)
        for i in range(per_model):
            late = i >= per_model // 2
            label = int(rng.integers(0, 2))
            bad = late and rng.random() < wrong
            event = {
                "model": name,
                "id": f"{name}-{i}",
                "ts": T0 + i,
                "features": {"x": float(rng.normal(shift if late else 0.0, 1)), "c": f"v{int(rng.integers(0, 3))}"},
                "prediction": 1 - label if bad else label,
                "label": label,
                "attributes": {"team": "checkout" if m % 2 else "search"},
            }
            events.append((rng.random(), orjson.dumps(event)))
    events.sort()
    return [e for _, e in events]


def run(tmp: Path, policies: list[Path], stream: list[bytes], batch_size: int = 8000) -> tuple[Daemon, list[dict]]:
    out: list[dict[str, Any]] = []
    daemon = Daemon(
        Settings(state_dir=tmp, batch_size=batch_size, execute=False),
        MemorySource(stream),
        [load_policy(p) for p in policies],
        listener=out.append,
    )
    daemon.run()
    daemon.close()
    return daemon, out


def by_model(out: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for o in out:
        if o["type"] in ("signal", "decision"):
            grouped.setdefault(o["model"], []).append(o)
    return grouped


def test_one_glob_policy_for_a_thousand_models_equals_a_thousand_single_model_policies(tmp_path: Path) -> None:
    models, per_model = 1000, 16
    stream = fleet_stream(models, per_model)
    (tmp_path / "fleet.yaml").write_text(f"version: 1\nmodels: 'shop-*'\n{BODY}")
    singles = []
    for m in range(models):
        path = tmp_path / "singles" / f"shop-{m:04d}.yaml"
        path.parent.mkdir(exist_ok=True)
        path.write_text(f"version: 1\nmodel: shop-{m:04d}\n{BODY}")
        singles.append(path)

    fleet, fleet_out = run(tmp_path / "fleet-state", [tmp_path / "fleet.yaml"], stream)
    single, single_out = run(tmp_path / "single-state", singles, stream)

    assert fleet.stats.admitted == models and single.stats.admitted == 0
    assert fleet.stats.unrouted == single.stats.unrouted == 0
    got, want = by_model(fleet_out), by_model(single_out)
    assert len(want) == models, "every model signals"
    assert sum(1 for o in single_out if o["type"] == "decision") > 100, "the rules fire for many models"
    assert got == want
    assert fleet.stats.by_model == single.stats.by_model
    # The same per-model state, actions and audit in the store.
    a, b = Store(tmp_path / "fleet-state" / "state.db"), Store(tmp_path / "single-state" / "state.db")
    for m in ("shop-0000", "shop-0517", "shop-0999"):
        sa, sb = a.pipeline_state(m), b.pipeline_state(m)
        assert sa is not None and sb is not None
        sa.pop("digest"), sb.pop("digest"), sa["engine"].pop("digest"), sb["engine"].pop("digest")  # the file hash
        assert sa == sb
        drop = ("seq", "wall")
        assert [{k: v for k, v in x.items() if k not in drop} for x in a.audit(m)] == [
            {k: v for k, v in x.items() if k not in drop} for x in b.audit(m)
        ]
    assert [(x.key, x.model) for x in a.actions()] == [(x.key, x.model) for x in b.actions()]
    a.close(), b.close()


def test_a_new_model_is_admitted_at_once_logged_counted_and_routed_the_same_after_a_restart(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    policy = tmp_path / "fleet.yaml"
    policy.write_text(f"version: 1\nmodels: ['shop-*', 'outlet-1']\n{BODY}")
    stream = fleet_stream(3, 40) + [orjson.dumps({"model": "bank-1", "id": "b", "prediction": 1})]
    caplog.set_level(logging.INFO, logger="driftwarden.daemon")
    state = tmp_path / "state"
    first, _ = run(state, [policy], stream[:60])
    admitted = sorted(first.pipelines)
    assert "outlet-1" in admitted, "an exact name without 'where:' has its pipeline from the start"
    assert first.stats.admitted == len(admitted) - 1 >= 2
    assert any("first seen at event" in r.getMessage() and "shop-*" in r.getMessage() for r in caplog.records)
    assert first.stats.unrouted == 0

    second = Daemon(Settings(state_dir=state, execute=False), MemorySource(stream), [load_policy(policy)])
    assert sorted(second.pipelines) == admitted, "admitted models get their pipeline back before any event"
    events_before = {m: second.pipelines[m].engine.events for m in admitted if m != "outlet-1"}
    assert all(events_before.values()), "with their checkpointed state"
    second.run()
    second.close()
    assert sorted(second.pipelines) == ["outlet-1", "shop-0000", "shop-0001", "shop-0002"]
    assert second.stats.unrouted == 1, "bank-1 has no policy"
    uninterrupted, _ = run(tmp_path / "whole", [policy], stream)
    assert {m: p.stats() for m, p in second.pipelines.items()} == uninterrupted.stats.by_model


def test_the_most_specific_policy_watches_a_model(tmp_path: Path) -> None:
    (tmp_path / "all.yaml").write_text(f"version: 1\nmodels: '*'\n{BODY}")
    (tmp_path / "shop.yaml").write_text(f"version: 1\nmodels: 'shop-*'\n{BODY}")
    (tmp_path / "search.yaml").write_text(f"version: 1\nmodels: 'shop-*'\nwhere: {{team: search}}\n{BODY}")
    (tmp_path / "flagship.yaml").write_text(f"version: 1\nmodel: shop-0001\n{BODY}")
    stream = fleet_stream(4, 10) + fleet_stream(1, 10, prefix="bank-")
    daemon, _ = run(tmp_path / "state", [tmp_path / f"{n}.yaml" for n in ("all", "shop", "search", "flagship")], stream)
    watched = {m: p.policy.path.name for m, p in daemon.pipelines.items()}
    assert watched == {
        "shop-0000": "search.yaml",  # even models are team search: the glob with a 'where' wins
        "shop-0001": "flagship.yaml",  # an exact name beats every glob
        "shop-0002": "search.yaml",
        "shop-0003": "shop.yaml",
        "bank-0000": "all.yaml",
    }


def test_an_ambiguous_model_is_not_watched_and_counted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "a.yaml").write_text(f"version: 1\nmodels: 'shop-000*'\n{BODY}")
    (tmp_path / "b.yaml").write_text(f"version: 1\nmodels: '*hop-0000'\n{BODY}")  # 8 literal characters each
    stream = fleet_stream(2, 10)
    daemon, _ = run(tmp_path / "state", [tmp_path / "a.yaml", tmp_path / "b.yaml"], stream)
    assert sorted(daemon.pipelines) == ["shop-0001"]
    assert daemon.stats.ambiguous == daemon.stats.unrouted == 10
    assert any("select it equally specifically" in r.getMessage() for r in caplog.records)


def test_overrides_change_one_models_monitor_only(tmp_path: Path) -> None:
    (tmp_path / "fleet.yaml").write_text(
        f"version: 1\nmodels: 'shop-*'\n{BODY}overrides:\n  'shop-0001': {{perf: {{window: {{events: 4}}}}}}\n"
    )
    daemon, out = run(tmp_path / "state", [tmp_path / "fleet.yaml"], fleet_stream(2, 16))
    windows = {m: {o["count"] for o in outs if o.get("monitor") == "perf"} for m, outs in by_model(out).items()}
    assert windows == {"shop-0000": {8}, "shop-0001": {4}}
    assert daemon.pipelines["shop-0001"].policy.spec.monitors["perf"].window.events == 4


def test_two_policies_selecting_alike_are_refused_with_both_positions(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(f"version: 1\nmodels: ['x', 'shop-*']\n{BODY}")
    (tmp_path / "b.yaml").write_text(f"version: 1\nmodels:\n  - 'shop-*'\n{BODY}")
    with pytest.raises(PolicyLoadError) as e:
        Daemon(
            Settings(state_dir=tmp_path / "s"),
            MemorySource([]),
            [load_policy(tmp_path / n) for n in ("a.yaml", "b.yaml")],
        )
    assert [str(x).split(": ", 1)[0] for x in e.value.errors] == [f"{tmp_path}/a.yaml:2:15", f"{tmp_path}/b.yaml:3:5"]
    result = CliRunner().invoke(main, ["validate", str(tmp_path / "a.yaml"), str(tmp_path / "b.yaml")])
    assert result.exit_code == 2
    assert (
        f"{tmp_path}/b.yaml:3:5: models: glob 'shop-*' is also selected by {tmp_path}/a.yaml (line 2, column 15)"
        in (result.output)
    )


def test_validate_events_shows_which_models_each_policy_watches(tmp_path: Path) -> None:
    (tmp_path / "shop.yaml").write_text(f"version: 1\nmodels: 'shop-*'\nwhere: {{team: [checkout]}}\n{BODY}")
    (tmp_path / "flagship.yaml").write_text(f"version: 1\nmodel: shop-0002\n{BODY}")
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(fleet_stream(4, 3) + fleet_stream(1, 2, prefix="bank-")) + b"\n")
    result = CliRunner().invoke(
        main, ["validate", str(tmp_path / "shop.yaml"), str(tmp_path / "flagship.yaml"), "--events", str(events)]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"{tmp_path}/shop.yaml: 2 models: shop-0001, shop-0003",
        f"{tmp_path}/flagship.yaml: 1 model: shop-0002",
        "not watched: 2 models",
        "  bank-0000: no policy selects it",
        "  shop-0000: its attributes match no policy's 'where'",
    ]
