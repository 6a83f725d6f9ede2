"""`agenttrail worker`: the chain stage, the checkpointer and the Faust embed agent in one process.

Several workers may run; the chain stage's partitions spread over them (one consumer group).
The checkpointer must run in exactly one of them (`checkpoints=True`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from agenttrail.config import Settings
from agenttrail.control.service import Registry
from agenttrail.metrics import METRICS
from agenttrail.processors.chain_worker import ChainWorker, run_chain_worker
from agenttrail.processors.checkpointer import Checkpointer
from agenttrail.processors.service_key import load_or_create_service_key

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    name: str = "w0"
    chain: bool = True
    checkpoints: bool = True
    embed: bool = True
    retention_interval_seconds: float = 3600.0


def stats_path(settings: Settings, name: str) -> Path:
    return settings.home / "run" / f"worker-{name}.json"


def write_stats(settings: Settings, name: str) -> None:
    path = stats_path(settings, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"time": time.time(), **METRICS.snapshot()}))
    tmp.replace(path)


async def run_worker(settings: Settings, bootstrap: str, options: WorkerOptions,
                     stop: asyncio.Event | None = None) -> None:
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread
            loop.add_signal_handler(sig, stop.set)
    registry = Registry(settings, bootstrap).start()
    threads: list[tuple[object, threading.Thread]] = []
    with registry.read() as view:
        registry_view = view
    if options.chain:
        chain = ChainWorker(settings, bootstrap, registry_view, name=options.name,
                            on_registry_miss=lambda: registry.sync(10))
        threads.append((chain, run_chain_worker(chain)))
    if options.checkpoints:
        key = load_or_create_service_key(settings)
        registry.publish_service_key(key.name, key.public_key)
        cp = Checkpointer(settings, bootstrap, registry_view, key, options.retention_interval_seconds)
        thread = threading.Thread(target=_guard(cp.run), name="checkpointer", daemon=True)
        thread.start()
        threads.append((cp, thread))
    app = None
    if options.embed:
        from agenttrail.processors.embedder import make_embedder
        from agenttrail.processors.faust_app import create_faust_app

        embedder = make_embedder(settings)
        app = create_faust_app(settings, bootstrap, embedder)
        await app.start()
    logger.info("worker %s running (chain=%s checkpoints=%s embed=%s)", options.name, options.chain,
                options.checkpoints, options.embed)
    try:
        while not stop.is_set():
            write_stats(settings, options.name)
            if any(not t.is_alive() for _, t in threads):
                logger.error("a worker stage stopped: shutting down")
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=1.0)
    finally:
        for stage, _ in threads:
            stage.stop()  # type: ignore[attr-defined]
        if app is not None:
            await app.stop()
        for _, thread in threads:
            await asyncio.to_thread(thread.join, 30)
        write_stats(settings, options.name)
        registry.close()


def _guard(target: object) -> object:
    def run() -> None:
        try:
            target()  # type: ignore[operator]
        except Exception:
            logger.exception("stage crashed")

    return run
