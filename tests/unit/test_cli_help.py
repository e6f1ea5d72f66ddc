"""Every ``--help`` shows each paragraph of a command's docstring whole: rich wraps it at the
terminal's width, never where the source line happened to end.

Rendered on a terminal far wider than any paragraph, nothing needs wrapping, so a paragraph that
is not on one line was broken by a line break left in the help text.
"""

from __future__ import annotations

import inspect
import itertools
import re
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from kubehop.cli import main
from kubehop.cli.helptext import reflow

WIDE = 1000
BOX = re.compile(r"[│╭╮╰╯─]")


# click's Command and Group, whichever click typer brings (newer typers vendor their own).
Command = Any


def _subcommands(command: Command) -> dict[str, Command]:
    return dict(getattr(command, "commands", None) or {})


def _commands(group: Command, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Command]]:
    found: list[tuple[tuple[str, ...], Command]] = []
    for name, command in sorted(_subcommands(group).items()):
        found.append(((*path, name), command))
        found += _commands(command, (*path, name))
    return found


ROOT: Command = typer.main.get_command(main.app)
COMMANDS = _commands(ROOT)


def _help_lines(path: tuple[str, ...], width: int) -> list[str]:
    result = CliRunner().invoke(main.app, [*path, "--help"], env={"COLUMNS": str(width)})
    assert result.exit_code == 0, result.output
    return [" ".join(BOX.sub(" ", line).split()) for line in result.output.splitlines()]


def _paragraphs(command: Command) -> list[str]:
    return [p for p in reflow(command.help or "").split("\n\n") if p]


def test_every_command_has_a_paragraph_to_check() -> None:
    assert len(COMMANDS) > 20
    assert all(_paragraphs(command) for _, command in COMMANDS)


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_own_help_shows_each_paragraph_on_one_line(path: tuple[str, ...],
                                                   command: Command) -> None:
    lines = _help_lines(path, WIDE)
    for paragraph in _paragraphs(command):
        assert any(paragraph in line for line in lines), (paragraph, lines)


@pytest.mark.parametrize("path", [(), *(p for p, c in COMMANDS if _subcommands(c))],
                         ids=lambda p: " ".join(("kubehop", *p)))
def test_group_lists_each_command_with_its_first_paragraph_whole(path: tuple[str, ...]) -> None:
    group = ROOT
    for name in path:
        group = _subcommands(group)[name]
    lines = _help_lines(path, WIDE)
    for name, command in _subcommands(group).items():
        first = _paragraphs(command)[0]
        assert any(line.startswith(f"{name} ") and line.endswith(first) for line in lines), (
            name, first, lines)


def test_the_source_docstrings_are_wrapped_so_the_check_means_something() -> None:
    """At least one command's docstring spans several source lines: the case that broke."""
    docs = [inspect.getdoc(c.callback) or "" for _, c in COMMANDS if c.callback is not None]
    assert any("\n" in doc.split("\n\n")[0] for doc in docs)


def _docstring(command: Command) -> str:
    return (inspect.getdoc(command.callback) or "") if command.callback is not None else ""


def _source_breaks(doc: str) -> list[tuple[str, str]]:
    """(last word before, first word after) of each line break inside a paragraph."""
    lines = [line.strip() for line in doc.splitlines()]
    return [(here.split()[-1], after.split()[0])
            for here, after in itertools.pairwise(lines) if here and after]


def _early_break(raw: str, tail: str, head: str, width: int) -> bool:
    """Whether the rendered line ends with ``tail`` although ``head`` would still have fitted
    after it: in a panel, before its right border and padding; outside, within the width."""
    raw = raw.rstrip()
    if raw.endswith("│"):
        content, room = raw[:-1].rstrip(), len(raw) - 2
    else:
        content, room = raw, width - 1
    return (content.endswith(f" {tail}") and len(content) + 1 + len(head) <= room)


PAGES = [(), *(p for p, _ in COMMANDS)]


@pytest.mark.parametrize("path", PAGES, ids=lambda p: " ".join(("kubehop", *p)))
def test_help_at_100_columns_breaks_no_line_where_the_source_did(path: tuple[str, ...]) -> None:
    """What ``COLUMNS=100 kubehop ... --help`` shows: the page's own docstring and, on a group's
    page, those of the commands it lists."""
    command = ROOT
    for name in path:
        command = _subcommands(command)[name]
    shown = [command, *_subcommands(command).values()]
    result = CliRunner().invoke(main.app, [*path, "--help"], env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.output
    for doc in (_docstring(c) for c in shown):
        for tail, head in _source_breaks(doc):
            early = [raw for raw in result.output.splitlines()
                     if _early_break(raw, tail, head, 100)]
            assert not early, (tail, head, early)
