"""Settings: built once from the environment (and an optional `.env`), then passed down.

Nothing else in agenttrail reads ``os.environ``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from agenttrail.errors import ConfigError

ENV_PREFIX = "AGENTTRAIL_"


@dataclass(frozen=True, slots=True)
class Settings:
    home: Path = Path(".agenttrail")
    kafka_bootstrap: str | None = None  # None: start/use the bundled local broker
    clickhouse_url: str = "chdb:///.agenttrail/clickhouse"
    lancedb_uri: str = ".agenttrail/lancedb"
    retention_days: int = 90
    auth_disabled: bool = False
    api_host: str = "127.0.0.1"
    api_port: int = 3400
    embedder: str = "minilm"
    partitions: int = 4
    max_event_bytes: int = 900_000
    clock_skew_seconds: int = 300
    checkpoint_interval_seconds: float = 10.0
    chain_snapshot_seconds: float = 60.0  # 0: never snapshot (a new owner folds the whole ledger)
    checkpointer_snapshot_seconds: float = 60.0  # 0: never snapshot (a restart folds every ledger)
    key_grace_seconds: int = 86_400
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def broker_dir(self) -> Path:
        return self.home / "kafka"

    def with_overrides(self, **kwargs: object) -> Settings:
        return replace(self, **kwargs)  # type: ignore[arg-type]


def _read_dotenv(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip().strip('"').strip("'")
    return values


def _int(env: dict[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(ENV_PREFIX + name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{ENV_PREFIX}{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{ENV_PREFIX}{name} must be >= {minimum}, got {value}")
    return value


def _bool(env: dict[str, str], name: str) -> bool:
    return env.get(ENV_PREFIX + name, "").strip().lower() in {"1", "true", "yes", "on"}


def load_settings(environ: dict[str, str] | None = None, dotenv: Path | None = Path(".env")) -> Settings:
    """Build Settings from `.env` (lowest), then the process environment (highest)."""
    env: dict[str, str] = {}
    if dotenv is not None:
        env.update(_read_dotenv(dotenv))
    env.update(os.environ if environ is None else environ)
    home = Path(env.get(ENV_PREFIX + "HOME") or ".agenttrail")
    bootstrap = env.get(ENV_PREFIX + "KAFKA_BOOTSTRAP") or None
    return Settings(
        home=home,
        kafka_bootstrap=bootstrap,
        clickhouse_url=env.get(ENV_PREFIX + "CLICKHOUSE_URL") or f"chdb:///{home}/clickhouse",
        lancedb_uri=env.get(ENV_PREFIX + "LANCEDB_URI") or str(home / "lancedb"),
        retention_days=_int(env, "RETENTION_DAYS", 90, minimum=1),
        auth_disabled=_bool(env, "AUTH_DISABLED"),
        api_host=env.get(ENV_PREFIX + "API_HOST") or "127.0.0.1",
        api_port=_int(env, "API_PORT", 3400, minimum=0),
        embedder=env.get(ENV_PREFIX + "EMBEDDER") or "minilm",
        partitions=_int(env, "PARTITIONS", 4, minimum=1),
        max_event_bytes=_int(env, "MAX_EVENT_BYTES", 900_000, minimum=1024),
        clock_skew_seconds=_int(env, "CLOCK_SKEW_SECONDS", 300, minimum=1),
        checkpoint_interval_seconds=float(_int(env, "CHECKPOINT_INTERVAL_SECONDS", 10, minimum=1)),
        chain_snapshot_seconds=float(_int(env, "CHAIN_SNAPSHOT_SECONDS", 60, minimum=0)),
        checkpointer_snapshot_seconds=float(_int(env, "CHECKPOINTER_SNAPSHOT_SECONDS", 60, minimum=0)),
        key_grace_seconds=_int(env, "KEY_GRACE_SECONDS", 86_400, minimum=0),
        extra={k: v for k, v in (
            ("embedder_threads", env.get(ENV_PREFIX + "EMBEDDER_THREADS", "")),
            ("embedder_api_key", env.get(ENV_PREFIX + "EMBEDDER_API_KEY", "")),
        ) if v},
    )
