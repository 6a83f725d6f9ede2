"""`agenttrail bench sink`: raw insert rows/s and end-to-end sink rows/s into ClickHouse.

raw: pre-built `events` rows inserted in `batch_rows` batches (the engine's ceiling here).
sink: LedgerRecords through ClickHouseSink (row mapping + batching + dedup-token inserts).
decode_sink: Avro-encoded ledger bytes through `ClickHouseSink.add` (what the consumer does).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from agenttrail.schemas.ledger import encode_ledger
from agenttrail.sinks.clickhouse.rows import EVENT_COLUMNS, event_row
from agenttrail.sinks.clickhouse.schema import open_store
from agenttrail.sinks.clickhouse.synthetic import SyntheticSpec, generate
from agenttrail.sinks.clickhouse.writer import ClickHouseSink

TOPIC = "agenttrail.bench.ledger"


def bench_clickhouse(rows: int = 500_000, batch_rows: int = 20_000, url: str | None = None) -> dict[str, float]:
    """Returns {"rows", "batch_rows", "raw_rows_per_s", "sink_rows_per_s", "decode_sink_rows_per_s"}.

    Uses a fresh chDB store under a temp directory unless `url` is given (then three fresh
    databases on it are used, and dropped afterwards).
    """
    records = list(generate(SyntheticSpec(events=rows, payload_pad=120, seed=1)))
    tmp = tempfile.TemporaryDirectory(prefix="agenttrail-bench-ch-")
    target = url or f"chdb://{Path(tmp.name) / 'clickhouse'}"
    stamp = time.strftime("%H%M%S")
    result: dict[str, float] = {"rows": float(rows), "batch_rows": float(batch_rows)}
    stores = []
    try:
        raw = open_store(target, database=f"bench_raw_{stamp}")
        stores.append(raw)
        prepared = [event_row(r, 0, i, 36_500) for i, r in enumerate(records)]
        started = time.perf_counter()
        for i in range(0, rows, batch_rows):
            raw.insert("events", prepared[i : i + batch_rows], EVENT_COLUMNS)
        result["raw_rows_per_s"] = rows / (time.perf_counter() - started)
        del prepared

        store = open_store(target, database=f"bench_sink_{stamp}")
        stores.append(store)
        sink = ClickHouseSink(store, batch_rows=batch_rows, max_age_s=1e9, retention_days=36_500)
        started = time.perf_counter()
        for offset, rec in enumerate(records):
            sink.add_ledger(TOPIC, 0, offset, rec)
            if sink.due():
                sink.flush()
        sink.flush(force=True)
        result["sink_rows_per_s"] = rows / (time.perf_counter() - started)

        encoded = [encode_ledger(r) for r in records]
        store2 = open_store(target, database=f"bench_decode_{stamp}")
        stores.append(store2)
        sink2 = ClickHouseSink(store2, batch_rows=batch_rows, max_age_s=1e9, retention_days=36_500)
        started = time.perf_counter()
        for offset, value in enumerate(encoded):
            sink2.add(TOPIC, 0, offset, None, value)
            if sink2.due():
                sink2.flush()
        sink2.flush(force=True)
        result["decode_sink_rows_per_s"] = rows / (time.perf_counter() - started)
        result["insert_share"] = sink2.stats.insert_seconds / max(1e-9, rows / result["decode_sink_rows_per_s"])
    finally:
        for store in stores:
            store.command(f"DROP DATABASE IF EXISTS `{store.database}`")
            store.close()
        tmp.cleanup()
    return result
