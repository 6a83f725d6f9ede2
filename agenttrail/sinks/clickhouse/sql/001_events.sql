-- The events table: one row per ledger record (verified + chained envelope).
--
-- Engine: ReplacingMergeTree keyed by (tenant_id, session_id, chain_index). A ledger record is a
-- deterministic function of the chain state, so a replayed record is byte-identical to the first
-- copy: replacing it is deduplication, never an update. Exact replays of a batch are also dropped at
-- insert time by insert_deduplication_token (non_replicated_deduplication_window); replays with
-- other batch boundaries (restart after kill -9) may leave a second physical copy until a merge,
-- which is why every view reads `events FINAL`. Each copy lands in the same daily partition (the
-- partition key is a function of ts), so FINAL never needs to merge across partitions.
--
-- Retention: per tenant, by purge commands (agenttrail/sinks/clickhouse/purge.py). `expires_at` is
-- the row's expiry computed by the sink from the tenant's retention when the row was written; the
-- TTL below is only a safety net and never removes `lesson` events.
CREATE TABLE IF NOT EXISTS events
(
    tenant_id         LowCardinality(String),
    session_id        String,
    chain_index       UInt64,
    event_id          String,
    agent_id          LowCardinality(String),
    seq               UInt64,
    ts                DateTime64(6, 'UTC'),
    type              LowCardinality(String),
    payload           String CODEC(ZSTD(3)),
    payload_sha256    String,
    attributes        Map(String, String),
    key_id            LowCardinality(String),
    signature         String,
    prev_hash         String,
    entry_hash        String,
    seq_gap           UInt8,
    source_partition  UInt32,
    source_offset     UInt64,
    ledger_partition  UInt32,
    ledger_offset     UInt64,
    model             LowCardinality(String),
    prompt_tokens     UInt64,
    completion_tokens UInt64,
    cost_usd          Float64,
    latency_ms        Float64,
    tool              LowCardinality(String),
    tool_status       LowCardinality(String),
    expires_at        DateTime('UTC')
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(ts)
ORDER BY (tenant_id, session_id, chain_index)
TTL expires_at DELETE WHERE type != 'lesson'
SETTINGS non_replicated_deduplication_window = 10000, ttl_only_drop_parts = 0
