"""`agenttrail worker`: verify + chain, checkpoints and retention, embeddings."""

from __future__ import annotations

import asyncio
import logging

import typer

from agenttrail.config import load_settings
from agenttrail.kafka.broker import resolve_bootstrap
from agenttrail.processors.runtime import WorkerOptions, run_worker


def register(app: typer.Typer) -> None:
    app.command("worker", help="Run the processors: verify+chain, checkpoints, embeddings.")(worker)


def worker(
    name: str = typer.Option("w0", help="Worker name; restarts under the same name fence the old one."),
    chain: bool = typer.Option(True, "--chain/--no-chain", help="Run the verify+chain stage."),
    checkpoints: bool = typer.Option(True, "--checkpoints/--no-checkpoints",
                                     help="Run the checkpointer (exactly one worker per cluster)."),
    embed: bool = typer.Option(True, "--embed/--no-embed", help="Run the Faust embed agent."),
    retention_interval: float = typer.Option(3600.0, help="Seconds between retention passes."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    logging.getLogger().setLevel(logging.INFO if verbose else logging.WARNING)
    settings = load_settings()
    bootstrap = resolve_bootstrap(settings)
    options = WorkerOptions(name=name, chain=chain, checkpoints=checkpoints, embed=embed,
                            retention_interval_seconds=retention_interval)
    if not asyncio.run(run_worker(settings, bootstrap, options)):
        raise typer.Exit(1)  # a stage died: exit non-zero so a supervisor restarts the worker
