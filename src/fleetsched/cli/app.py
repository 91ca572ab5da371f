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

try:  # recent typer carries its own copy of click
    from typer._click.exceptions import ClickException, UsageError
except ImportError:  # pragma: no cover - older typer on the click package
    from click.exceptions import ClickException, UsageError  # type: ignore[assignment]

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
        report,
        serve,
        simulate,
        sweep,
        trace,
    )


def main() -> None:
    """Entry point: a usage error (bad flag or value, unknown command) and a fleetsched error
    both print one line on stderr and exit 2; Ctrl-C exits 130."""
    _register()
    try:
        code = app(prog_name="fleetsched", standalone_mode=False)
    except FleetschedError as e:
        print_error(str(e))
        sys.exit(2)
    except UsageError as e:
        where = f" (see {e.ctx.command_path} -h)" if e.ctx is not None else ""
        print_error(e.format_message() + where)
        sys.exit(e.exit_code)
    except ClickException as e:
        print_error(e.format_message())
        sys.exit(e.exit_code)
    except typer.Abort:
        print_error("interrupted")
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
