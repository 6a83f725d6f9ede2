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

from agenttrail import native
from agenttrail.config import Settings
from agenttrail.control.service import Registry
from agenttrail.kafka.admin import ensure_topics, system_topic_specs
from agenttrail.kafka.topics import ledger_topic
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
                     stop: asyncio.Event | None = None) -> bool:
    """Run until stopped (True) or until a stage dies (False: the process should exit non-zero so
    its supervisor restarts it; the restart resumes from committed state)."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread
            loop.add_signal_handler(sig, stop.set)
    ensure_topics(bootstrap, system_topic_specs(settings.partitions, settings.retention_days))
    registry = Registry(settings, bootstrap).start()
    threads: list[tuple[object, threading.Thread]] = []
    with registry.read() as view:
        registry_view = view
    if options.chain:
        _report_fast_path()
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
    embed = EmbedSupervisor(settings, bootstrap, registry) if options.embed else None
    logger.info("worker %s running (chain=%s checkpoints=%s embed=%s)", options.name, options.chain,
                options.checkpoints, options.embed)
    failed = False
    try:
        while not stop.is_set():
            write_stats(settings, options.name)
            if embed is not None:
                await embed.refresh()
            if any(not t.is_alive() for _, t in threads):
                logger.error("a worker stage stopped: shutting down")
                failed = True
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=1.0)
    finally:
        for stage, _ in threads:
            stage.stop()  # type: ignore[attr-defined]
        if embed is not None:
            await embed.stop()
        for _, thread in threads:
            await asyncio.to_thread(thread.join, 30)
        write_stats(settings, options.name)
        registry.close()
    return not failed


def _report_fast_path() -> None:
    """Say whether verification runs the native code (C fast path, Rust Ed25519) or the fallbacks."""
    status = native.status()
    METRICS.set("agenttrail_native_fastpath", 1.0 if native.fastpath is not None else 0.0,
                help="1: the verifier's C fast path is in use (agenttrail/native)")
    if native.fastpath is None:
        logger.warning("C fast path %s: verification runs the pure-Python path", status.removeprefix("off "))
    else:
        logger.info("C fast path on")
    ed25519 = native.ed25519_status()
    METRICS.set("agenttrail_native_ed25519", 1.0 if ed25519 == "on" else 0.0,
                help="1: signatures are verified by agenttrail's Rust library, in batches (agenttrail/native)")
    if ed25519 == "on":
        logger.info("Ed25519: native batch verification on")
    else:
        logger.warning("Ed25519 native verifier %s (about 3x the CPU per event)", ed25519.removeprefix("off "))


def _guard(target: object) -> object:
    def run() -> None:
        try:
            target()  # type: ignore[operator]
        except Exception:
            logger.exception("stage crashed")

    return run


class EmbedSupervisor:
    """Runs the Faust embed app over the ledger topics of every tenant the registry knows."""

    def __init__(self, settings: Settings, bootstrap: str, registry: Registry) -> None:
        from agenttrail.processors.embedder import make_embedder

        self.settings = settings
        self.bootstrap = bootstrap
        self.registry = registry
        self.embedder = make_embedder(settings)
        self.topics: tuple[str, ...] = ()
        self.app: object | None = None

    def wanted(self) -> tuple[str, ...]:
        with self.registry.read() as view:
            return tuple(sorted(ledger_topic(t.tenant_id) for t in view.tenants()))

    async def refresh(self) -> None:
        from agenttrail.processors.faust_app import create_faust_app

        topics = self.wanted()
        if topics == self.topics:
            return
        await self.stop()
        self.topics = topics
        if topics:
            logger.info("embed agent follows %d ledger topics", len(topics))
            self.app = create_faust_app(self.settings, self.bootstrap, self.embedder, topics)
            await self.app.start()  # type: ignore[attr-defined]

    async def stop(self) -> None:
        if self.app is not None:
            await self.app.stop()  # type: ignore[attr-defined]
            self.app = None
