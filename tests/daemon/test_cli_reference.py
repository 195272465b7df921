"""The docs' CLI reference (docs/cli.md) is generated from the click commands and kept in sync."""

from __future__ import annotations

from pathlib import Path

import click
from driftwarden.daemon.cli import main
from driftwarden.daemon.cli.reference import END, START, render, replace_section

PAGE = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def test_the_docs_cli_reference_is_up_to_date() -> None:
    text = PAGE.read_text()
    assert replace_section(text, render()) == text, (
        "docs/cli.md is stale: run `python -m driftwarden.daemon.cli.reference --write docs/cli.md`"
    )


def _walk(group: click.Group, path: str) -> list[tuple[str, click.Command]]:
    found: list[tuple[str, click.Command]] = []
    for name, command in group.commands.items():
        found.append((f"{path} {name}", command))
        if isinstance(command, click.Group):
            found += _walk(command, f"{path} {name}")
    return found


def test_every_command_and_option_is_in_the_reference() -> None:
    text = render()
    commands = _walk(main, "driftwarden")
    assert {"driftwarden run", "driftwarden replay", "driftwarden models promote"} <= {p for p, _ in commands}
    for path, command in commands:
        assert f"## `{path}`" in text, path
        for param in command.params:
            if isinstance(param, click.Option):
                for opt in param.opts:
                    assert f"`{opt}" in text or f"/ {opt}" in text, (path, opt)


def test_replace_section_touches_only_the_part_between_the_markers() -> None:
    text = f"# title\n{START}\nold\n{END}\nafter\n"
    assert replace_section(text, "new") == f"# title\n{START}\nnew\n{END}\nafter\n"
