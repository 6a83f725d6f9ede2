"""Per-tenant retention purge: delete a tenant's events older than a cut, keeping `lesson` events.

Retention is per tenant, so one table TTL cannot express it; the retention processor decides the
cut (after writing its signed anchor) and the sink executes it here. Deletes are synchronous
mutations (`mutations_sync = 2`): the rows are physically gone when this returns.

The sessions summary (`sessions_agg`) holds idempotent aggregate states: the states of every
session touched by the purge are deleted and rebuilt by re-inserting the session's surviving
events (the ReplacingMergeTree key makes that re-insert invisible to every `FINAL` reader, and the
materialized view recomputes the states from them: one copy of the aggregation logic).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from agenttrail.kafka.topics import validate_tenant_id
from agenttrail.processors.retention import PurgeCommand
from agenttrail.sinks.clickhouse.store import ClickHouseStore

logger = logging.getLogger(__name__)

SYNC = {"mutations_sync": 2}
_CUT = "ts < fromUnixTimestamp64Micro({before:Int64}, 'UTC')"


@dataclass(frozen=True, slots=True)
class PurgeResult:
    tenant_id: str
    before_ts: int
    events_deleted: int
    sessions_rebuilt: int
    dlq_deleted: int


def purge_tenant(store: ClickHouseStore, command: PurgeCommand) -> PurgeResult:
    tenant = validate_tenant_id(command.tenant_id)
    params: dict[str, object] = {"tenant": tenant, "before": int(command.before_ts),
                                 "keep": list(command.keep_types)}
    doomed = f"tenant_id = {{tenant:String}} AND {_CUT} AND type NOT IN {{keep:Array(String)}}"
    if command.session_ids is not None:  # whole expired sessions only (what the checkpointer anchors)
        params["only"] = list(command.session_ids)
        doomed += " AND has({only:Array(String)}, session_id)"
    counted = store.query_rows(
        f"SELECT count(), groupUniqArray(session_id) FROM events FINAL WHERE {doomed}", params
    )
    events_deleted, sessions = int(counted[0][0]), list(counted[0][1])
    if events_deleted:
        store.command(f"ALTER TABLE events DELETE WHERE {doomed}", params, settings=SYNC)
        touched = {"tenant": tenant, "sessions": sessions}
        in_sessions = "tenant_id = {tenant:String} AND has({sessions:Array(String)}, session_id)"
        store.command(f"ALTER TABLE sessions_agg DELETE WHERE {in_sessions}", touched, settings=SYNC)
        store.command(f"INSERT INTO events SELECT * FROM events FINAL WHERE {in_sessions}", touched)
    dlq_where = f"tenant_id = {{tenant:String}} AND {_CUT}"
    dlq_deleted = int(store.command(f"SELECT count() FROM dlq FINAL WHERE {dlq_where}", params) or 0)
    if dlq_deleted:
        store.command(f"ALTER TABLE dlq DELETE WHERE {dlq_where}", params, settings=SYNC)
    result = PurgeResult(tenant, int(command.before_ts), events_deleted, len(sessions), dlq_deleted)
    logger.info(
        "retention purge tenant=%s before_ts=%d kept=%s: %d events deleted, %d sessions rebuilt, "
        "%d dead letters deleted",
        tenant, result.before_ts, ",".join(command.keep_types), events_deleted, len(sessions), dlq_deleted,
    )
    return result
