"""`agenttrail up | down | status`: the bundled local Kafka broker."""

from __future__ import annotations

import time

import typer

from agenttrail.cli.output import console, emit
from agenttrail.config import load_settings
from agenttrail.kafka.broker import ensure_jars, local_broker


def register(app: typer.Typer) -> None:
    app.command("up", help="Start the bundled Kafka broker unless AGENTTRAIL_KAFKA_BOOTSTRAP is set.")(up)
    app.command("down", help="Stop the bundled Kafka broker (by its PID).")(down)
    app.command("status", help="Say what runs: the broker and its address.")(status)


def up(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    settings = load_settings()
    if settings.kafka_bootstrap:
        emit({"broker": "external", "bootstrap": settings.kafka_bootstrap, "started": False}, as_json=as_json)
        return
    broker = local_broker(settings)
    running = broker.state()
    started = time.monotonic()
    if running is None:
        with console.status("fetching Kafka jars (first run only) and starting the broker…"):
            ensure_jars()
            state = broker.start()
    else:
        state = running
    emit({"broker": "local", "bootstrap": state.bootstrap, "pid": state.pid,
          "started": running is None, "seconds": round(time.monotonic() - started, 2),
          "home": state.home}, as_json=as_json, title="agenttrail up")


def down(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    settings = load_settings()
    stopped = local_broker(settings).stop()
    emit({"broker": "local", "stopped": stopped}, as_json=as_json, title="agenttrail down")


def status(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    from agenttrail import native

    settings = load_settings()
    # What a worker started from here would verify with (docs/signing.md section 6, README).
    code = {"parsing_fast_path": native.status(), "ed25519_verifier": native.ed25519_status()}
    if settings.kafka_bootstrap:
        emit({"broker": "external", "bootstrap": settings.kafka_bootstrap, **code}, as_json=as_json)
        return
    state = local_broker(settings).state()
    row = {"broker": "local", "running": state is not None,
           "bootstrap": state.bootstrap if state else None, "pid": state.pid if state else None,
           "uptime_s": round(time.time() - state.started_at, 1) if state else None, **code}
    emit(row, as_json=as_json, title="agenttrail status")
