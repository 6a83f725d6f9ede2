-- Mirror of agenttrail.checkpoints. The value is stored as received (raw bytes, and its text when
-- it is UTF-8 JSON); the fields below are extracted when present. Keyed by Kafka coordinates, so a
-- replayed message replaces itself.
CREATE TABLE IF NOT EXISTS checkpoints
(
    tenant_id        LowCardinality(String),
    kafka_partition  UInt32,
    kafka_offset     UInt64,
    kafka_ts         DateTime64(3, 'UTC'),
    tree_size        UInt64,
    root_hash        String,
    body             String CODEC(ZSTD(3)),
    raw_key          String,
    raw_value        String CODEC(ZSTD(3))
)
ENGINE = ReplacingMergeTree
ORDER BY (tenant_id, kafka_partition, kafka_offset)
SETTINGS non_replicated_deduplication_window = 1000;

-- Mirror of agenttrail.dlq (JSON per docs/contracts.md).
CREATE TABLE IF NOT EXISTS dlq
(
    tenant_id        LowCardinality(String),
    dlq_partition    UInt32,
    dlq_offset       UInt64,
    ts               DateTime64(6, 'UTC'),
    reason           LowCardinality(String),
    detail           String,
    tenant_topic     String,
    source_partition Int64,
    source_offset    Int64,
    original_b64     String CODEC(ZSTD(3))
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (tenant_id, dlq_partition, dlq_offset)
SETTINGS non_replicated_deduplication_window = 1000
