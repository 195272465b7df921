"""docs/operating.md's metrics table is generated from the collector's catalogue and kept in sync; every
family the collector emits is in the catalogue."""

from __future__ import annotations

from pathlib import Path

from driftwarden.daemon.http.metrics import METRICS, markdown_table, replace_table

PAGE = Path(__file__).resolve().parents[2] / "docs" / "operating.md"


def test_the_metrics_table_is_up_to_date() -> None:
    text = PAGE.read_text()
    assert replace_table(text) == text, (
        "docs/operating.md's metrics table is stale: run"
        " `python -m driftwarden.daemon.http.metrics --write docs/operating.md`"
    )


def test_the_catalogue_follows_prometheus_naming() -> None:
    table = markdown_table()
    for m in METRICS:
        assert m.name.startswith("driftwarden_") and f"`{m.name}`" in table
        assert m.name.endswith("_total") == (m.type == "counter"), m.name
        assert m.name.endswith("_info") == (m.type == "info"), m.name
        assert "id" not in m.labels  # never an unbounded label
    assert len({m.name for m in METRICS}) == len(METRICS)
    assert "(img/status.png)" in PAGE.read_text()
