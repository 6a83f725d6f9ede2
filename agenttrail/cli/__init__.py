"""The `agenttrail` command line. Each room adds its commands from its own module.

A room's module exports ``register(app: typer.Typer) -> None``; errors derived from
``AgentTrailError`` become one-line messages with exit code 2, never a traceback.
"""

from __future__ import annotations

import importlib
import logging
import sys

import typer
from rich.console import Console

from agenttrail.errors import AgentTrailError

app = typer.Typer(
    name="agenttrail",
    help="agenttrail: the audit trail for AI-agent fleets.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err_console = Console(stderr=True, soft_wrap=True)

# Modules that add commands; one per room. A module that is not there yet is skipped.
COMMAND_MODULES = (
    "broker",
    "control",
    "fleet",
    "worker",
    "serve",
    "audit",
    "bench",
    "demo",
)


def _load_commands() -> None:
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"agenttrail.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"agenttrail.cli.{name}":
                continue
            raise
        module.register(app)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    _load_commands()
    try:
        rc = app(args=argv, standalone_mode=False)
    except AgentTrailError as exc:
        err_console.print(f"[red]error:[/red] {exc}", highlight=False)
        return 2
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130
    except Exception as exc:  # click usage errors and the like
        import click

        if isinstance(exc, click.exceptions.Exit):
            return exc.exit_code
        if isinstance(exc, click.ClickException):
            exc.show()
            return exc.exit_code
        if isinstance(exc, click.exceptions.Abort):
            return 1
        raise
    return rc if isinstance(rc, int) else 0


if __name__ == "__main__":
    sys.exit(main())
