"""The docs' policy reference (docs/policy-reference.md) is generated from the schema and kept in sync."""

from __future__ import annotations

from pathlib import Path

from driftwarden.policies.conditions import FUNCTIONS
from driftwarden.policies.engine import LATEST_DEFAULTS
from driftwarden.policies.loader import CONTEXT_NAMES
from driftwarden.policies.reference import CONTEXT, END, START, render, replace_section
from driftwarden.policies.schema import MONITOR_MODELS, Rule

PAGE = Path(__file__).resolve().parents[2] / "docs" / "policy-reference.md"


def test_the_docs_reference_is_up_to_date() -> None:
    text = PAGE.read_text()
    assert replace_section(text, render()) == text, (
        "docs/policy-reference.md is stale: run"
        " `python -m driftwarden.policies.reference --write docs/policy-reference.md`"
    )


def test_the_reference_covers_every_field_kind_and_context_name() -> None:
    text = render()
    for name, field in Rule.model_fields.items():
        assert f"| `{field.alias or name}` |" in text
    for kind, model in MONITOR_MODELS.items():
        assert f"### `{kind}`" in text
        for name, field in model.model_fields.items():
            if name != "kind":
                assert f"| `{field.alias or name}` |" in text, (kind, name)
    for name in CONTEXT_NAMES + FUNCTIONS:
        assert f"`{name}" in CONTEXT, name
    for key in ("drift", "value", "p_value", "threshold", "share_drifted", "features", "ready", "at"):
        assert key in LATEST_DEFAULTS and f"`<monitor>.{key}" in CONTEXT


def test_replace_section_touches_only_the_part_between_the_markers() -> None:
    text = f"# title\n\nbefore\n{START}\nold\n{END}\nafter\n"
    assert replace_section(text, "new") == f"# title\n\nbefore\n{START}\nnew\n{END}\nafter\n"
