"""The ``fleetsched`` command line (typer + rich).

Every command module registers itself on ``app`` (or a sub-app); ``main`` turns a
:class:`~fleetsched.errors.FleetschedError` into one line on stderr and exit code 2.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from fleetsched.errors import FleetschedError

app = typer.Typer(
    name="fleetsched",
    help="Fleet scheduler for LLM inference: simulate, compare and plan serving policies.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
# Wide enough for comparison tables when the output goes to a file or a CI log.
console = Console() if sys.stdout.isatty() else Console(width=160)
err_console = Console(stderr=True)


def _register() -> None:
    # Imported for their side effect of adding commands to ``app``.
    from fleetsched.cli import calibrate, compare, simulate, trace  # noqa: F401


def main() -> None:
    """Entry point: typer handles usage errors (exit 2); fleetsched errors print one line."""
    _register()
    try:
        app()
    except FleetschedError as e:
        err_console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        sys.exit(2)
