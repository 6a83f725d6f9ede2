"""Configuration of confluent-kafka clients, in one place."""

from __future__ import annotations

from typing import Any

# A new tenant topic must be seen by pattern subscriptions within seconds, not minutes.
METADATA_REFRESH_MS = 2000


def producer_config(bootstrap: str, **overrides: Any) -> dict[str, Any]:
    """A producer that never loses or duplicates what it was handed: acks=all + idempotence."""
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 10,
        "compression.type": "zstd",
        "batch.num.messages": 10000,
        "queue.buffering.max.messages": 500000,
    }
    config.update(overrides)
    return config


def consumer_config(bootstrap: str, group_id: str, **overrides: Any) -> dict[str, Any]:
    """A consumer that commits only what its owner says is safely down."""
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "group.id": group_id,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "topic.metadata.refresh.interval.ms": METADATA_REFRESH_MS,
        "isolation.level": "read_committed",
        "enable.partition.eof": False,
    }
    config.update(overrides)
    return config
