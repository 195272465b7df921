"""docs/input.md shows the dead-letter reason codes exactly as the code defines them."""

from __future__ import annotations

from pathlib import Path

from driftwarden.daemon.config import InputConfig
from driftwarden.daemon.io.reasons import REASONS, table

PAGE = Path(__file__).resolve().parents[2] / "docs" / "input.md"


def test_the_reason_codes_table_is_in_sync_with_the_code() -> None:
    text = PAGE.read_text()
    start = text.index("<!-- reason codes:")
    body = text[text.index("\n", start) + 1 : text.index("<!-- end of reason codes -->")].strip()
    assert body == table(), (
        "docs/input.md is stale: paste `python -m driftwarden.daemon.io.reasons` between the markers"
    )
    assert all(f"`{code}`" in body for code in REASONS)


def test_every_input_limit_is_documented_with_its_key() -> None:
    text = PAGE.read_text()
    assert all(f"`input.{key}`" in text for key in InputConfig.model_fields)
