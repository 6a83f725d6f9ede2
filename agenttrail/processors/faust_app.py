"""The Faust app of the worker: the embed agent, off the chaining path.

It follows the ledger topics of the tenants it is given, takes records in batches (size or time
bound), embeds the text-bearing ones and produces `agenttrail.embeddings`. Faust runs it
at-least-once; the LanceDB sink upserts on event_id, so a redelivery changes nothing.

faust-streaming's aiokafka driver does not implement pattern subscriptions (its `subscribe` says
"XXX pattern does not work"), so the worker passes the explicit list of ledger topics and builds
a new app when the registry gains a tenant (`EmbedSupervisor` in runtime.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import faust

from agenttrail.config import Settings
from agenttrail.kafka.topics import EMBEDDINGS_TOPIC
from agenttrail.metrics import METRICS
from agenttrail.processors.embed import embed_batch, encode_embedding
from agenttrail.processors.embedder import Embedder
from agenttrail.schemas.ledger import decode_ledger

logger = logging.getLogger(__name__)

EMBED_BATCH = 64
EMBED_WITHIN_S = 1.0


def create_faust_app(settings: Settings, bootstrap: str, embedder: Embedder | None,
                     topics: Sequence[str] = ()) -> faust.App:
    app = faust.App(
        "agenttrail-embed",
        broker=f"kafka://{bootstrap}",
        store="memory://",
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        web_enabled=False,
        datadir=str(settings.home / "faust"),
        consumer_auto_offset_reset="earliest",
        consumer_max_fetch_size=4 * 1024 * 1024,
        broker_commit_every=1000,
        producer_compression_type="zstd",
    )
    if embedder is None or not topics:
        return app
    ledger = app.topic(*topics, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    embeddings = app.topic(EMBEDDINGS_TOPIC, key_type=bytes, value_type=bytes,
                           key_serializer="raw", value_serializer="raw", partitions=settings.partitions)

    @app.agent(ledger)
    async def embed(stream: Any) -> None:
        async for values in stream.take(EMBED_BATCH, within=EMBED_WITHIN_S):
            records = []
            for value in values:
                try:
                    records.append(decode_ledger(value))
                except Exception:
                    METRICS.inc("agenttrail_embed_skipped_total", help="unreadable ledger records")
            out = await asyncio.to_thread(embed_batch, records, embedder)
            for rec in out:
                await embeddings.send(key=rec.tenant_id.encode(), value=encode_embedding(rec))
            METRICS.inc("agenttrail_embedded_total", len(out), help="text-bearing events embedded")
            METRICS.inc("agenttrail_embed_consumed_total", len(values))

    return app
