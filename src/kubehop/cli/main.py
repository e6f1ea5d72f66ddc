"""The ``kubehop`` command: a thin face that turns kubehop errors into one-line messages."""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from kubehop import __version__
from kubehop.cli import bench, migrate, testbed
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

err = Console(stderr=True, highlight=False, soft_wrap=True)


@app.command()
def version() -> None:
    """Print kubehop's version."""
    typer.echo(__version__)


def run() -> None:
    """Console entry point: kubehop errors become 'error: ...' on stderr and a non-zero exit."""
    try:
        code = app(standalone_mode=False)
    except KubehopError as exc:
        err.print(f"error: {exc}", markup=False)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print("interrupted", markup=False)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(1)
    except Exception as exc:  # click usage errors carry their own exit code and message
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
    sys.exit(code if isinstance(code, int) else 0)
