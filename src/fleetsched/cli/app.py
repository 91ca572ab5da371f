"""The ``fleetsched`` command line (typer + rich).

Every command module registers itself on ``app`` (or a sub-app); ``main`` turns a
:class:`~fleetsched.errors.FleetschedError` into one line on stderr and exit code 2.
"""

from __future__ import annotations

import sys
from importlib.metadata import version
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from fleetsched.errors import FleetschedError

app = typer.Typer(
    name="fleetsched",
    help="Fleet scheduler for LLM inference: simulate, compare and plan serving policies.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)
# The terminal's width, or $COLUMNS (80 if unset) when the output is a pipe or a file.
console = Console()
err_console = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"fleetsched {version('fleetsched')}")
        raise typer.Exit()


@app.callback()
def _root(
    show_version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Fleet scheduler for LLM inference: simulate, compare and plan serving policies."""


def print_error(message: str) -> None:
    """``error: <message>`` on stderr, on one line, the message printed literally (no markup)."""
    err_console.print(
        Text.assemble(("error:", "bold red"), " ", message), highlight=False, soft_wrap=True
    )


def _register() -> None:
    # Imported for their side effect of adding commands to ``app``.
    from fleetsched.cli import (  # noqa: F401
        bench,
        calibrate,
        catalog,
        compare,
        emulate,
        fidelity,
        perf,
        place,
        plan,
        serve,
        simulate,
        sweep,
        trace,
    )


def main() -> None:
    """Entry point: typer handles usage errors (exit 2); fleetsched errors print one line."""
    _register()
    try:
        app()
    except FleetschedError as e:
        print_error(str(e))
        sys.exit(2)
