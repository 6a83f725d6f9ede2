-- Analyst views. Every view carries tenant_id so row policies and WHERE tenant_id = ... apply, and
-- reads `events FINAL` so a record that was inserted twice (replay after a crash) counts once.
-- Error semantics: an error is an `error` event or a `tool_result` whose status is 'error'.

CREATE VIEW IF NOT EXISTS v_tool_usage_hourly AS
SELECT
    tenant_id,
    toStartOfHour(ts)                                             AS hour,
    tool,
    countIf(type = 'tool_call')                                   AS calls,
    countIf(type = 'tool_result')                                 AS results,
    countIf(type = 'tool_result' AND tool_status = 'error')       AS errors,
    if(results = 0, 0, sumIf(latency_ms, type = 'tool_result') / results) AS avg_latency_ms,
    maxIf(latency_ms, type = 'tool_result')                       AS max_latency_ms
FROM events FINAL
WHERE type IN ('tool_call', 'tool_result')
GROUP BY tenant_id, hour, tool;

CREATE VIEW IF NOT EXISTS v_llm_daily AS
SELECT
    tenant_id,
    toDate(ts)                                  AS day,
    model,
    count()                                     AS calls,
    sum(prompt_tokens)                          AS prompt_tokens,
    sum(completion_tokens)                      AS completion_tokens,
    prompt_tokens + completion_tokens           AS total_tokens,
    sum(cost_usd)                               AS cost_usd,
    avg(latency_ms)                             AS avg_latency_ms
FROM events FINAL
WHERE type = 'llm_call'
GROUP BY tenant_id, day, model;

CREATE VIEW IF NOT EXISTS v_agent_errors AS
SELECT
    tenant_id,
    toDate(ts)                                                    AS day,
    agent_id,
    count()                                                       AS events,
    countIf(type = 'error')                                       AS error_events,
    countIf(type = 'tool_result' AND tool_status = 'error')       AS tool_errors,
    error_events + tool_errors                                    AS errors,
    errors / events                                               AS error_rate
FROM events FINAL
GROUP BY tenant_id, day, agent_id;

CREATE VIEW IF NOT EXISTS v_agent_activity AS
SELECT
    tenant_id,
    toDate(ts)                          AS day,
    agent_id,
    uniqExact(session_id)               AS sessions,
    count()                             AS events,
    countIf(type = 'llm_call')          AS llm_calls,
    countIf(type = 'tool_call')         AS tool_calls,
    countIf(type = 'message')           AS messages,
    min(ts)                             AS first_ts,
    max(ts)                             AS last_ts
FROM events FINAL
GROUP BY tenant_id, day, agent_id;

CREATE VIEW IF NOT EXISTS v_session_summary AS
SELECT
    tenant_id,
    session_id,
    min(agent_id)                                                  AS agent_id,
    min(ts)                                                        AS started_at,
    max(ts)                                                        AS last_ts,
    dateDiff('millisecond', started_at, last_ts) / 1000.0          AS duration_s,
    count()                                                        AS events,
    max(chain_index)                                               AS head_index,
    argMax(entry_hash, chain_index)                                AS head_hash,
    countIf(type = 'llm_call')                                     AS llm_calls,
    sum(prompt_tokens)                                             AS prompt_tokens,
    sum(completion_tokens)                                         AS completion_tokens,
    sum(cost_usd)                                                  AS cost_usd,
    countIf(type = 'tool_call')                                    AS tool_calls,
    countIf(type = 'error' OR (type = 'tool_result' AND tool_status = 'error')) AS errors,
    countIf(seq_gap = 1)                                           AS seq_gaps,
    max(type = 'session_end')                                      AS ended
FROM events FINAL
GROUP BY tenant_id, session_id;

-- The materialized summary, finalized: cheap listing of sessions (no tokens/cost; see 002).
CREATE VIEW IF NOT EXISTS v_sessions AS
SELECT
    tenant_id,
    session_id,
    minMerge(agent_id)                 AS agent_id,
    minMerge(first_ts)                 AS started_at,
    maxMerge(last_ts)                  AS last_ts,
    uniqExactMerge(events)             AS events,
    maxMerge(head_index)               AS head_index,
    argMaxMerge(head_hash)             AS head_hash,
    uniqExactIfMerge(llm_calls)        AS llm_calls,
    uniqExactIfMerge(tool_calls)       AS tool_calls,
    uniqExactIfMerge(errors)           AS errors,
    maxMerge(ended)                    AS ended
FROM sessions_agg
GROUP BY tenant_id, session_id
