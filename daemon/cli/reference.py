"""The docs site's CLI reference (docs/cli.md), generated from the click commands.

``python -m driftwarden.daemon.cli.reference --write docs/cli.md`` rewrites the part of that page between
:data:`START` and :data:`END`; a test regenerates it and fails when the page is stale (after an option or a
command was added: run the command and commit the page).

>>> text = render()
>>> "## `driftwarden run`" in text and "| `--state-dir PATH` |" in text
True
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Iterator
from pathlib import Path

import click
from driftwarden.daemon.cli.commands import main as cli

START = "<!-- cli-reference:start -->"
END = "<!-- cli-reference:end -->"

PROG = "driftwarden"


def _commands(command: click.Command, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    """Every command under ``command``, depth first, in the order ``--help`` lists them."""
    yield path, command
    if isinstance(command, click.Group):
        ctx = click.Context(command, info_name=path[-1])
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                yield from _commands(sub, (*path, name))


def _context(path: tuple[str, ...]) -> click.Context:
    """A context chain for ``path`` (so usage lines read ``driftwarden models list``)."""
    ctx = click.Context(cli, info_name=path[0])
    command: click.Command = cli
    for name in path[1:]:
        assert isinstance(command, click.Group)
        sub = command.get_command(ctx, name)
        assert sub is not None
        command = sub
        ctx = click.Context(command, info_name=name, parent=ctx)
    return ctx


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _section(path: tuple[str, ...], command: click.Command) -> list[str]:
    ctx = _context(path)
    title = " ".join(path)
    out = [f"## `{title}`", ""]
    if command.help:
        out += [inspect.cleandoc(click.unstyle(command.help)).replace("\b\n", ""), ""]
    pieces = command.collect_usage_pieces(ctx)
    out += ["```text", f"{ctx.command_path} {' '.join(pieces)}".rstrip(), "```", ""]
    help_option = command.get_help_option(ctx)
    params = [p for p in command.get_params(ctx) if p is not help_option]
    options = [p for p in params if isinstance(p, click.Option)]
    rows = [r for p in options if (r := p.get_help_record(ctx)) is not None]
    arguments = [p for p in params if isinstance(p, click.Argument)]
    if arguments:
        out += ["Arguments: " + ", ".join(f"`{a.make_metavar(ctx)}`" for a in arguments), ""]
    if rows:
        out += ["| option | meaning |", "|---|---|"]
        out += [f"| `{_cell(opts)}` | {_cell(help_text) or '—'} |" for opts, help_text in rows]
        out.append("")
    if isinstance(command, click.Group):
        subs = [n for n in command.list_commands(ctx) if not (c := command.get_command(ctx, n)) or not c.hidden]
        out += ["Commands: " + ", ".join(f"`{title} {n}`" for n in subs), ""]
    return out


def render() -> str:
    """The reference as Markdown (the text between the page's markers)."""
    out = [
        "Generated from the click commands by `python -m driftwarden.daemon.cli.reference --write docs/cli.md`",
        "(a test keeps it in sync). `driftwarden COMMAND --help` prints the same.",
        "",
    ]
    for path, command in _commands(cli, (PROG,)):
        out += _section(path, command)
    return "\n".join(out).rstrip() + "\n"


def replace_section(text: str, section: str) -> str:
    """``text`` with everything between the markers replaced by ``section``."""
    start, end = text.index(START) + len(START), text.index(END)
    return text[:start] + "\n" + section.strip() + "\n" + text[end:]


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "--write":
        path = Path(argv[1])
        path.write_text(replace_section(path.read_text(), render()))
        return 0
    print(render())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
