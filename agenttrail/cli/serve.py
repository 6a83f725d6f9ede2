"""`agenttrail serve`: the API, the sinks and the embedded ClickHouse store in one process."""

from __future__ import annotations

import asyncio
import logging

import typer

from agenttrail.config import load_settings


def register(app: typer.Typer) -> None:
    app.command("serve", help="Serve the API and run the ClickHouse/LanceDB sinks (owns the embedded store).")(
        serve_command)


def serve_command(
    host: str = typer.Option(None, help="Listen address (default AGENTTRAIL_API_HOST, 127.0.0.1)."),
    port: int = typer.Option(None, help="Listen port (default AGENTTRAIL_API_PORT, 3400)."),
    sinks: bool = typer.Option(True, "--sinks/--no-sinks", help="Run the sinks in this process."),
    registry: bool = typer.Option(True, "--registry/--no-registry",
                                  help="Open the live control plane (keys, registration, authentication)."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    # imported here: it loads pyarrow and the like, whose threads would make every other command's
    # process multi-threaded (`audit verify` forks its workers only from a single-threaded one)
    from agenttrail.serve import ServeOptions, serve

    logging.getLogger().setLevel(logging.INFO if verbose else logging.WARNING)
    settings = load_settings()
    asyncio.run(serve(settings, ServeOptions(sinks=sinks, registry=registry, host=host, port=port)))
