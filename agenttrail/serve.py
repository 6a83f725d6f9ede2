"""`agenttrail serve`: the one process that owns the embedded ClickHouse store.

It runs, side by side: the ClickHouse sink (ledgers, checkpoints, dead letters), the LanceDB sink
(embeddings), a live Registry (the control-plane view) and the aiohttp API on
``Settings.api_host:api_port``. The sinks run in threads started and stopped by the app's
cleanup contexts; SIGTERM/SIGINT stop the site, then the sinks (each flushes and commits what it
wrote), then the registry (flushing key usage), then close the store.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from agenttrail.api.app import RUNNER_OPTIONS, CleanupCtx, create_app
from agenttrail.config import Settings
from agenttrail.errors import ConfigError
from agenttrail.processors.embedder import Embedder, make_embedder
from agenttrail.sinks.clickhouse.store import ClickHouseStore
from agenttrail.sinks.lancedb import DEFAULT_DIM, LanceStore

logger = logging.getLogger(__name__)


class Runnable(Protocol):
    def start(self) -> None: ...

    def stop(self, timeout: float = 30.0) -> None: ...


@dataclass(frozen=True, slots=True)
class ServeOptions:
    sinks: bool = True  # run the ClickHouse and LanceDB sinks in this process
    registry: bool = True  # open a live Registry (needs Kafka); without it keys/register answer 503
    host: str | None = None
    port: int | None = None


def thread_context(name: str, runnable: Runnable) -> CleanupCtx:
    """A cleanup context that starts a background runner with the app and stops it on shutdown."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        runnable.start()
        logger.info("%s started", name)
        yield
        await asyncio.to_thread(runnable.stop)
        logger.info("%s stopped", name)

    return context


def retention_lookup(settings: Settings, registry: Any) -> Callable[[str], int]:
    def days(tenant_id: str) -> int:
        tenant = registry.tenant(tenant_id) if registry is not None else None
        return tenant.retention_days if tenant is not None else settings.retention_days

    return days


def build_app(settings: Settings, *, store: ClickHouseStore, lance: LanceStore | None, embedder: Embedder | None,
              registry: Any, bootstrap: str | None, sinks: bool = True) -> web.Application:
    """The serving app: the API plus (with a bootstrap and `sinks`) the two sink loops."""
    background: list[CleanupCtx] = []
    if sinks and bootstrap:
        from agenttrail.sinks.clickhouse.consumer import ClickHouseSinkRunner
        from agenttrail.sinks.lancedb_consumer import LanceSinkRunner

        background.append(thread_context("clickhouse sink", ClickHouseSinkRunner(
            settings, store, bootstrap=bootstrap, instance_id="agenttrail-serve",
            retention_days=retention_lookup(settings, registry))))
        if lance is not None:
            background.append(thread_context("lancedb sink", LanceSinkRunner(settings, lance, bootstrap=bootstrap)))
    return create_app(settings, store=store, lance=lance, embedder=embedder, control=registry, background=background,
                      cursor_key=cursor_key(settings))


def cursor_key(settings: Settings) -> bytes:
    """The HMAC key of pagination cursors, kept under the home (0600) so cursors survive a restart."""
    import os
    import secrets

    path = settings.home / "cursor.key"
    try:
        key = path.read_bytes()
        if len(key) == 32:
            return key
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key)
    return key


def open_embedder(settings: Settings) -> Embedder | None:
    try:
        return make_embedder(settings)
    except ConfigError as exc:
        logger.warning("recall disabled: %s", exc)
        return None


async def serve(settings: Settings, options: ServeOptions = ServeOptions(),
                stop: asyncio.Event | None = None) -> None:
    """Run until SIGTERM/SIGINT (or until `stop` is set)."""
    from agenttrail.sinks.clickhouse.schema import open_store

    bootstrap: str | None = None
    registry = None
    if options.registry or options.sinks:
        from agenttrail.kafka.broker import resolve_bootstrap

        bootstrap = resolve_bootstrap(settings)
    store = open_store(settings.clickhouse_url)
    embedder = open_embedder(settings)
    lance = LanceStore(settings.lancedb_uri, dim=embedder.dim if embedder is not None else DEFAULT_DIM)
    try:
        if options.registry and bootstrap:
            from agenttrail.control.service import Registry

            registry = await asyncio.to_thread(lambda: Registry(settings, bootstrap).start())
        app = build_app(settings, store=store, lance=lance, embedder=embedder, registry=registry,
                        bootstrap=bootstrap, sinks=options.sinks)
        runner = web.AppRunner(app, handle_signals=False, **RUNNER_OPTIONS)
        await runner.setup()
        host, port = options.host or settings.api_host, settings.api_port if options.port is None else options.port
        await web.TCPSite(runner, host, port).start()
        logger.warning("agenttrail API listening on http://%s:%d", host, port)
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            logger.warning("shutting down: stopping the API, then the sinks")
            await runner.cleanup()
    finally:
        if registry is not None:
            await asyncio.to_thread(registry.close)
        store.close()
