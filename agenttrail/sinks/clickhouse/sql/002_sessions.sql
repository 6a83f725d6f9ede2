-- Sessions summary, maintained by a materialized view as rows arrive.
-- Every aggregate here is idempotent (min, max, argMax, uniqExact over chain_index), so a ledger
-- record inserted twice (replay, restart after a crash) leaves the summary unchanged.
-- Sums (tokens, cost) are not idempotent: they are computed over `events FINAL` in the
-- `v_session_summary` view instead.
CREATE TABLE IF NOT EXISTS sessions_agg
(
    tenant_id    LowCardinality(String),
    session_id   String,
    agent_id     AggregateFunction(min, String),
    first_ts     AggregateFunction(min, DateTime64(6, 'UTC')),
    last_ts      AggregateFunction(max, DateTime64(6, 'UTC')),
    events       AggregateFunction(uniqExact, UInt64),
    head_index   AggregateFunction(max, UInt64),
    head_hash    AggregateFunction(argMax, String, UInt64),
    llm_calls    AggregateFunction(uniqExactIf, UInt64, UInt8),
    tool_calls   AggregateFunction(uniqExactIf, UInt64, UInt8),
    errors       AggregateFunction(uniqExactIf, UInt64, UInt8),
    ended        AggregateFunction(max, UInt8)
)
ENGINE = AggregatingMergeTree
ORDER BY (tenant_id, session_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS sessions_agg_mv TO sessions_agg AS
SELECT
    tenant_id,
    session_id,
    minState(toString(agent_id))                                             AS agent_id,
    minState(ts)                                                             AS first_ts,
    maxState(ts)                                                             AS last_ts,
    uniqExactState(chain_index)                                              AS events,
    maxState(chain_index)                                                    AS head_index,
    argMaxState(entry_hash, chain_index)                                     AS head_hash,
    uniqExactIfState(chain_index, toUInt8(type = 'llm_call'))                AS llm_calls,
    uniqExactIfState(chain_index, toUInt8(type = 'tool_call'))               AS tool_calls,
    uniqExactIfState(chain_index,
        toUInt8(type = 'error' OR (type = 'tool_result' AND tool_status = 'error'))) AS errors,
    maxState(toUInt8(type = 'session_end'))                                  AS ended
FROM events
GROUP BY tenant_id, session_id
