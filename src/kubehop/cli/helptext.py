"""Command help as typer should show it: each paragraph of a docstring on one line.

Docstrings are wrapped at the source's line length. typer joins the lines of a command's first
paragraph on its own ``--help`` page, but in rich markup mode it keeps every single line break
in the command list of its group and in later paragraphs, so the help broke mid-sentence
wherever the source did. Joining each paragraph's lines once, where the commands are
registered, lets rich wrap every paragraph at the terminal's width instead.
"""

from __future__ import annotations

import inspect

import typer

NO_REWRAP = "\b"
"""click's marker for a paragraph to show as written (a list, an example): kept as it is."""


def reflow(text: str) -> str:
    """``text`` dedented, with the lines of each paragraph (blank-line separated) joined by one
    space; a paragraph starting with :data:`NO_REWRAP` keeps its lines."""
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(
        paragraph if paragraph.startswith(NO_REWRAP)
        else " ".join(line.strip() for line in paragraph.splitlines())
        for paragraph in paragraphs)


def reflow_help(app: typer.Typer) -> None:
    """Reflow the help of every command and group under ``app``, in place: the help given to
    ``app.command(help=...)`` or else the callback's docstring, which typer would read."""
    for command in app.registered_commands:
        text = command.help if command.help is not None else inspect.getdoc(command.callback)
        if text:
            command.help = reflow(text)
    for group in app.registered_groups:
        if isinstance(group.help, str):
            group.help = reflow(group.help)
        if group.typer_instance is not None:
            if isinstance(group.typer_instance.info.help, str):
                group.typer_instance.info.help = reflow(group.typer_instance.info.help)
            reflow_help(group.typer_instance)
