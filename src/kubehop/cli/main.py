"""The ``kubehop`` command: a thin face that turns kubehop errors into one-line messages."""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from kubehop import __version__
from kubehop.cli import bench, controller, dashboard, migrate, testbed
from kubehop.cli.helptext import reflow_help
from kubehop.errors import KubehopError

app = typer.Typer(
    help="Live-migrate containerized microservices between Kubernetes clusters.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(testbed.app, name="testbed")
app.command("migrate")(migrate.migrate)
app.add_typer(migrate.migrations, name="migrations")
app.command("bench")(bench.bench)
app.add_typer(controller.app, name="controller")
app.command("dashboard")(dashboard.dashboard)

err = Console(stderr=True, highlight=False, soft_wrap=True)


@app.command()
def version() -> None:
    """Print kubehop's version."""
    typer.echo(__version__)


# Last, once every command is registered: docstrings wrapped in the source must not wrap so in
# the help (kubehop.cli.helptext says why).
reflow_help(app)


def run() -> None:
    """Console entry point: kubehop errors become 'error: ...' on stderr and a non-zero exit.

    Typer/click handle usage errors themselves (a usage line, exit 2); everything kubehop
    raises on purpose is a KubehopError, printed as one line.
    """
    try:
        app()
    except KubehopError as exc:
        err.print(f"error: {exc}", markup=False)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print("interrupted", markup=False)
        sys.exit(130)


# ``python -m kubehop.cli.main``: the benchmark starts the controller so, with the interpreter
# (and the code) it runs on itself, whichever ``kubehop`` is first on PATH.
if __name__ == "__main__":
    run()
