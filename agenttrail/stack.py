"""A whole agenttrail on one machine: the broker, workers and the serve process, as children.

`agenttrail demo` and `agenttrail bench` use it. Every process it starts is stopped by PID when it
stops (also on Ctrl-C and on errors); nothing is left behind.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agenttrail.config import Settings
from agenttrail.errors import AgentTrailError
from agenttrail.kafka.broker import LocalBroker, free_port
from agenttrail.processes import spawn_cli, stop_processes

logger = logging.getLogger(__name__)


@dataclass
class LocalStack:
    settings: Settings
    workers: int = 1
    embed: bool = True
    api_port: int = 0
    broker: LocalBroker | None = None
    bootstrap: str = ""
    children: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def home(self) -> Path:
        return Path(self.settings.home)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def env(self) -> dict[str, str]:
        """The whole environment of a child of this stack."""
        return {**os.environ, **self.env_overrides()}

    def env_overrides(self) -> dict[str, str]:
        """What a child of this stack gets on top of this process's environment."""
        return {
            "AGENTTRAIL_HOME": str(self.home),
            "AGENTTRAIL_KAFKA_BOOTSTRAP": self.bootstrap,
            "AGENTTRAIL_CLICKHOUSE_URL": self.settings.clickhouse_url,
            "AGENTTRAIL_LANCEDB_URI": self.settings.lancedb_uri,
            "AGENTTRAIL_API_PORT": str(self.api_port),
            "AGENTTRAIL_API_HOST": "127.0.0.1",
            "AGENTTRAIL_PARTITIONS": str(self.settings.partitions),
            "AGENTTRAIL_CHECKPOINT_INTERVAL_SECONDS": str(int(self.settings.checkpoint_interval_seconds)),
            "AGENTTRAIL_EMBEDDER_THREADS": "1",
            "HF_HUB_OFFLINE": "1",
        }

    # -- start ---------------------------------------------------------------------------------
    def start_broker(self) -> str:
        if self.settings.kafka_bootstrap:
            self.bootstrap = self.settings.kafka_bootstrap
            return self.bootstrap
        self.broker = LocalBroker(self.home / "kafka", partitions=self.settings.partitions)
        self.bootstrap = self.broker.start().bootstrap
        return self.bootstrap

    def spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        proc = spawn_cli(args, self.env_overrides(), self.home / f"{name}.log")
        self.children[name] = proc
        return proc

    def start_workers(self) -> None:
        for i in range(self.workers):
            args = ["worker", "--name", f"w{i}"]
            if i > 0:
                args.append("--no-checkpoints")
            if not self.embed or i > 0:
                args.append("--no-embed")
            self.spawn(f"worker-w{i}", *args)

    def stop_workers(self, timeout: float = 30.0) -> None:
        """Stop the workers only (the broker and the serve process keep running)."""
        names = [name for name in self.children if name.startswith("worker-")]
        stop_processes([self.children.pop(name) for name in names], timeout, group=True)

    def start_serve(self, timeout: float = 120.0) -> None:
        self.api_port = self.api_port or free_port()
        self.spawn("serve", "serve")
        self.wait_http("/health", timeout)

    def start(self) -> LocalStack:
        self.start_broker()
        self.start_workers()
        self.start_serve()
        return self

    def wait_http(self, path: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                return self.get(path)
            except (urllib.error.URLError, ConnectionError, OSError) as exc:
                last = str(exc)
            time.sleep(0.5)
        raise AgentTrailError(f"the API did not answer {path} within {timeout:.0f}s ({last}); "
                              f"see {self.home / 'serve.log'}")

    def get(self, path: str, key: str | None = None, timeout: float = 10.0) -> Any:
        request = urllib.request.Request(self.api_url + path)
        if key:
            request.add_header("Authorization", f"Bearer {key}")
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())

    def check_alive(self) -> None:
        for name, proc in self.children.items():
            if proc.poll() is not None:
                tail = (self.home / f"{name}.log").read_text(errors="replace").strip().splitlines()[-3:]
                raise AgentTrailError(f"{name} exited with code {proc.returncode}: {' | '.join(tail)}")

    def worker_stats(self) -> dict[str, float]:
        total: dict[str, float] = {}
        for path in (self.home / "run").glob("worker-*.json"):
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            for key, value in data.items():
                if key != "time" and isinstance(value, int | float):
                    total[key] = total.get(key, 0.0) + value
        return total

    # -- stop ----------------------------------------------------------------------------------
    def stop(self) -> None:
        stop_processes(list(self.children.values()), 30, group=True)
        self.children.clear()
        if self.broker is not None:
            self.broker.stop()
            self.broker = None

    def __enter__(self) -> LocalStack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
