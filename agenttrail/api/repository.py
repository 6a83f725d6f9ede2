"""The tenant repository: the ONLY code in the API that builds queries.

A `TenantRepository` is made from an authenticated principal's tenant id and adds
``tenant_id = {tenant:String}`` to every statement itself; handlers call its methods with
validated filters and never see SQL or a tenant parameter. Every value is bound server-side
(``{name:Type}``), never formatted into the text. Reads use ``FINAL`` (a replayed record may exist
twice until a merge) without merging across daily partitions, since both copies of a record always
land in the same partition.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agenttrail.api import shapes
from agenttrail.api.cursor import CursorCodec
from agenttrail.api.errors import BadRequest, Unavailable
from agenttrail.errors import NotFound
from agenttrail.kafka.topics import validate_tenant_id
from agenttrail.processors.chain import GENESIS, verify_chain
from agenttrail.processors.embedder import Embedder
from agenttrail.schemas.envelope import Envelope, signing_bytes, verify_signature
from agenttrail.sinks.clickhouse.store import ClickHouseStore
from agenttrail.sinks.lancedb import LanceStore, recall

logger = logging.getLogger(__name__)

# (tenant, key_id, ts micros, agent_id) -> the agent's public key valid then, or None.
KeyLookup = Callable[[str, str, int, str], bytes | None]

FINAL_SETTINGS = {"do_not_merge_across_partitions_select_final": 1}
MAX_VERIFY_EVENTS = 200_000

EVENT_COLUMNS = (
    "event_id, session_id, chain_index, agent_id, seq, toUnixTimestamp64Micro(ts) AS ts_us, type, "
    "payload, payload_sha256, attributes, key_id, signature, prev_hash, entry_hash, seq_gap, model, tool"
)
# Listings leave out the hashes and the signature: high-entropy hex that costs more to read than
# everything else together (measured at 1 M events: p50 34 ms without, 52 ms with). The full
# record is one GET /api/events/{id} or a session's events away.
SUMMARY_COLUMNS = (
    "event_id, session_id, chain_index, agent_id, seq, toUnixTimestamp64Micro(ts) AS ts_us, type, payload, "
    "attributes, model, tool"
)
_TS = "fromUnixTimestamp64Micro({%s:Int64}, 'UTC')"
UUID7_WINDOW_US = 86_400_000_000  # an event's ts is within a day of its UUIDv7 time (clock skew is minutes)


@dataclass(frozen=True, slots=True)
class TimeRange:
    start: int  # epoch micros, inclusive
    end: int  # epoch micros, exclusive


@dataclass(frozen=True, slots=True)
class EventFilter:
    time: TimeRange
    agent: str | None = None
    session: str | None = None
    type: str | None = None
    model: str | None = None
    tool: str | None = None
    text: str | None = None


@dataclass(frozen=True, slots=True)
class Page:
    items: list[dict[str, Any]]
    next_cursor: str | None

    def to_json(self, name: str) -> dict[str, Any]:
        return {name: self.items, "next_cursor": self.next_cursor}


# public view name -> (ClickHouse view, newest-first order); names are never taken from the request
ANALYST_VIEWS: dict[str, tuple[str, str]] = {
    "tool_usage_per_hour": ("v_tool_usage_hourly", "hour DESC, calls DESC"),
    "llm_cost_per_day": ("v_llm_daily", "day DESC, cost_usd DESC"),
    "error_rate_per_agent": ("v_agent_errors", "day DESC, error_rate DESC"),
    "agent_activity": ("v_agent_activity", "day DESC, events DESC"),
    "session_summary": ("v_session_summary", "last_ts DESC"),
}


def _plain(value: Any) -> Any:
    if isinstance(value, int | float | str | bool) or value is None:
        return value
    return str(value)


class TenantRepository:
    def __init__(self, store: ClickHouseStore, lance: LanceStore | None, tenant_id: str, *,
                 cursors: CursorCodec, embedder: Embedder | None = None,
                 key_lookup: KeyLookup | None = None) -> None:
        self.tenant_id = validate_tenant_id(tenant_id)
        self._store = store
        self._lance = lance
        self._cursors = cursors
        self._embedder = embedder
        self._key_lookup = key_lookup

    # ---- plumbing ----------------------------------------------------------------------------
    def _query(self, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        return self._store.query_dicts(sql, {**params, "tenant": self.tenant_id}, settings=FINAL_SETTINGS)

    def _position(self, kind: str, cursor: str | None, types: tuple[type, ...]) -> list[Any] | None:
        if cursor is None:
            return None
        position = self._cursors.decode(self.tenant_id, kind, cursor)
        if len(position) != len(types) or not all(
            isinstance(v, t) and not isinstance(v, bool) for v, t in zip(position, types, strict=True)
        ):
            raise BadRequest("invalid cursor")
        return position

    def _page(self, kind: str, rows: list[dict[str, Any]], limit: int, key: Callable[[dict[str, Any]], list[Any]],
              shape: Callable[[dict[str, Any]], dict[str, Any]]) -> Page:
        more = len(rows) > limit
        rows = rows[:limit]
        cursor = self._cursors.encode(self.tenant_id, kind, key(rows[-1])) if more and rows else None
        return Page([shape(r) for r in rows], cursor)

    @staticmethod
    def _time(where: list[str], params: dict[str, Any], time: TimeRange, column: str = "ts") -> None:
        where.append(f"{column} >= {_TS % 't_from'} AND {column} < {_TS % 't_to'}")
        params.update(t_from=time.start, t_to=time.end)

    # ---- events ------------------------------------------------------------------------------
    def _event_where(self, f: EventFilter) -> tuple[list[str], dict[str, Any]]:
        where = ["tenant_id = {tenant:String}"]
        params: dict[str, Any] = {}
        self._time(where, params, f.time)
        for column in ("agent", "session", "type", "model", "tool"):
            value = getattr(f, column)
            if value is not None:
                name = {"agent": "agent_id", "session": "session_id"}.get(column, column)
                where.append(f"{name} = {{{column}:String}}")
                params[column] = value
        if f.text:
            where.append("positionCaseInsensitiveUTF8(payload, {text:String}) > 0")
            params["text"] = f.text
        return where, params

    def events(self, f: EventFilter, limit: int, cursor: str | None = None, *, kind: str = "events",
               shape: Callable[[dict[str, Any]], dict[str, Any]] = shapes.event_summary,
               columns: str = SUMMARY_COLUMNS) -> Page:
        where, params = self._event_where(f)
        position = self._position(kind, cursor, (int, str, int))
        if position is not None:
            where.append(f"(ts, session_id, chain_index) < ({_TS % 'c_ts'}, {{c_sid:String}}, {{c_idx:UInt64}})")
            params.update(c_ts=position[0], c_sid=position[1], c_idx=position[2])
        sql = (f"SELECT {columns} FROM events FINAL WHERE {' AND '.join(where)} "
               "ORDER BY ts DESC, session_id DESC, chain_index DESC LIMIT {limit:UInt32}")
        rows = self._query(sql, {**params, "limit": limit + 1})
        return self._page(kind, rows, limit,
                          lambda r: [int(r["ts_us"]), r["session_id"], int(r["chain_index"])], shape)

    def event(self, event_id: str) -> dict[str, Any]:
        """One event. A UUIDv7 id carries its time: look within a day of it first (a few daily
        partitions) and scan the tenant's rows only if it is not there."""
        sql = (f"SELECT {EVENT_COLUMNS} FROM events FINAL WHERE tenant_id = {{tenant:String}} "
               "AND event_id = {event:String} WINDOW ORDER BY chain_index LIMIT 1")
        rows: list[dict[str, Any]] = []
        at = uuid7_micros(event_id)
        if at is not None:
            window = f"AND ts >= {_TS % 't_from'} AND ts < {_TS % 't_to'}"
            bounds = {"t_from": max(0, at - UUID7_WINDOW_US), "t_to": at + UUID7_WINDOW_US}
            rows = self._query(sql.replace("WINDOW", window), {"event": event_id, **bounds})
        if not rows:
            rows = self._query(sql.replace("WINDOW", ""), {"event": event_id})
        if not rows:
            raise NotFound(f"no event {event_id!r}")
        return shapes.event(rows[0])

    def lessons(self, f: EventFilter, limit: int, cursor: str | None = None) -> Page:
        lessons_only = EventFilter(f.time, agent=f.agent, session=f.session, type="lesson", text=f.text)
        return self.events(lessons_only, limit, cursor, kind="lessons", shape=shapes.lesson,
                           columns="event_id, session_id, chain_index, agent_id, toUnixTimestamp64Micro(ts) AS ts_us, "
                                   "payload")

    # ---- analyst views -----------------------------------------------------------------------
    def view(self, name: str, limit: int) -> list[dict[str, Any]]:
        """Rows of one analyst view (sinks/clickhouse/sql/004_views.sql), newest first."""
        try:
            table, order = ANALYST_VIEWS[name]
        except KeyError:
            raise BadRequest(f"unknown view; one of {', '.join(sorted(ANALYST_VIEWS))}") from None
        rows = self._query(f"SELECT * FROM {table} WHERE tenant_id = {{tenant:String}} "
                           f"ORDER BY {order} LIMIT {{limit:UInt32}}", {"limit": limit})
        return [{k: _plain(v) for k, v in row.items() if k != "tenant_id"} for row in rows]

    # ---- sessions ----------------------------------------------------------------------------
    def sessions(self, time: TimeRange, limit: int, cursor: str | None = None, agent: str | None = None) -> Page:
        where = ["tenant_id = {tenant:String}", f"last_ts >= {_TS % 't_from'}", f"started_at < {_TS % 't_to'}"]
        params: dict[str, Any] = {"t_from": time.start, "t_to": time.end}
        if agent is not None:
            where.append("agent_id = {agent:String}")
            params["agent"] = agent
        position = self._position("sessions", cursor, (int, str))
        if position is not None:
            where.append(f"(last_ts, session_id) < ({_TS % 'c_ts'}, {{c_sid:String}})")
            params.update(c_ts=position[0], c_sid=position[1])
        sql = ("SELECT session_id, agent_id, toUnixTimestamp64Micro(started_at) AS started_us, "
               "toUnixTimestamp64Micro(last_ts) AS last_us, events, head_index, head_hash, llm_calls, "
               f"tool_calls, errors, ended FROM v_sessions WHERE {' AND '.join(where)} "
               "ORDER BY last_ts DESC, session_id DESC LIMIT {limit:UInt32}")
        rows = self._query(sql, {**params, "limit": limit + 1})
        return self._page("sessions", rows, limit, lambda r: [int(r["last_us"]), r["session_id"]], shapes.session)

    def session(self, session_id: str) -> dict[str, Any]:
        rows = self._query(
            "SELECT session_id, agent_id, toUnixTimestamp64Micro(started_at) AS started_us, "
            "toUnixTimestamp64Micro(last_ts) AS last_us, events, head_index, head_hash, llm_calls, "
            "prompt_tokens, completion_tokens, cost_usd, tool_calls, errors, seq_gaps, ended "
            "FROM v_session_summary WHERE tenant_id = {tenant:String} AND session_id = {session:String}",
            {"session": session_id})
        if not rows:
            raise NotFound(f"no session {session_id!r}")
        return shapes.session(rows[0])

    def session_events(self, session_id: str, limit: int, cursor: str | None = None) -> Page:
        where = ["tenant_id = {tenant:String}", "session_id = {session:String}"]
        params: dict[str, Any] = {"session": session_id}
        position = self._position("session_events", cursor, (str, int))
        if position is not None:
            if position[0] != session_id:
                raise BadRequest("invalid cursor")
            where.append("chain_index > {c_idx:UInt64}")
            params["c_idx"] = position[1]
        sql = (f"SELECT {EVENT_COLUMNS} FROM events FINAL WHERE {' AND '.join(where)} "
               "ORDER BY chain_index LIMIT {limit:UInt32}")
        rows = self._query(sql, {**params, "limit": limit + 1})
        if not rows and position is None:
            raise NotFound(f"no session {session_id!r}")
        return self._page("session_events", rows, limit, lambda r: [session_id, int(r["chain_index"])],
                          shapes.event)

    def verify_session(self, session_id: str) -> dict[str, Any]:
        """Recompute the session's chain from the stored rows; check payload hashes and signatures."""
        rows = self._query(
            "SELECT event_id, agent_id, session_id, seq, toUnixTimestamp64Micro(ts) AS ts_us, type, payload, "
            "payload_sha256, attributes, key_id, signature, chain_index, prev_hash, entry_hash "
            "FROM events FINAL WHERE tenant_id = {tenant:String} AND session_id = {session:String} "
            "ORDER BY chain_index LIMIT {limit:UInt32}", {"session": session_id, "limit": MAX_VERIFY_EVENTS})
        if not rows:
            raise NotFound(f"no session {session_id!r}")
        return verify_rows(self.tenant_id, session_id, rows, self._key_lookup)

    # ---- recall, checkpoints, stats, dead letters ------------------------------------------
    def recall(self, query: str, k: int, type: str | None = None) -> list[dict[str, Any]]:
        if self._lance is None or self._embedder is None:
            raise Unavailable("recall is not available: this process has no vector store or embedder")
        hits = recall(self._lance, self._embedder, self.tenant_id, query, k=k, type=type)
        return [{"event_id": h.event_id, "session_id": h.session_id, "ts": h.ts, "time": shapes.iso(h.ts),
                 "type": h.type, "text": h.text, "score": round(h.score, 6)} for h in hits]

    def checkpoints(self, limit: int, cursor: str | None = None) -> Page:
        where = ["tenant_id = {tenant:String}"]
        params: dict[str, Any] = {}
        position = self._position("checkpoints", cursor, (int, int, int))
        if position is not None:
            where.append("(kafka_ts, kafka_partition, kafka_offset) < "
                         "(fromUnixTimestamp64Milli({c_ts:Int64}, 'UTC'), {c_p:UInt32}, {c_o:UInt64})")
            params.update(c_ts=position[0], c_p=position[1], c_o=position[2])
        sql = ("SELECT kafka_partition, kafka_offset, toUnixTimestamp64Milli(kafka_ts) AS kafka_ts_ms, raw_value "
               f"FROM checkpoints FINAL WHERE {' AND '.join(where)} "
               "ORDER BY kafka_ts DESC, kafka_partition DESC, kafka_offset DESC LIMIT {limit:UInt32}")
        rows = self._query(sql, {**params, "limit": limit + 1})
        return self._page("checkpoints", rows, limit, lambda r: [int(r["kafka_ts_ms"]), int(r["kafka_partition"]),
                                                                 int(r["kafka_offset"])], shapes.checkpoint)

    def stats(self, time: TimeRange) -> dict[str, Any]:
        where: list[str] = ["tenant_id = {tenant:String}"]
        params: dict[str, Any] = {}
        self._time(where, params, time)
        # One pass: a row per type plus the grand total (the empty grouping set, type = '').
        rows = self._query(
            "SELECT type, count() AS n, uniqExact(session_id) AS sessions, uniqExact(agent_id) AS agents, "
            "sum(prompt_tokens) AS prompt_tokens, sum(completion_tokens) AS completion_tokens, "
            "sum(cost_usd) AS cost_usd, countIf(tool_status = 'error') AS tool_errors "
            f"FROM events FINAL WHERE {' AND '.join(where)} GROUP BY GROUPING SETS ((type), ()) ORDER BY type",
            params)
        totals = next((r for r in rows if r["type"] == ""), None) or {
            "n": 0, "sessions": 0, "agents": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0,
            "tool_errors": 0}
        by_type = {r["type"]: int(r["n"]) for r in rows if r["type"] != ""}
        return {
            "from": time.start, "to": time.end, "events": int(totals["n"]),
            "sessions": int(totals["sessions"]), "agents": int(totals["agents"]), "by_type": by_type,
            "llm_calls": by_type.get("llm_call", 0), "tool_calls": by_type.get("tool_call", 0),
            "errors": by_type.get("error", 0) + int(totals["tool_errors"]),
            "prompt_tokens": int(totals["prompt_tokens"]),
            "completion_tokens": int(totals["completion_tokens"]),
            "cost_usd": round(float(totals["cost_usd"]), 6),
        }

    def dead_letters(self, time: TimeRange, limit: int, cursor: str | None = None, reason: str | None = None,
                     with_original: bool = False) -> Page:
        where = ["tenant_id = {tenant:String}"]
        params: dict[str, Any] = {}
        self._time(where, params, time)
        if reason is not None:
            where.append("reason = {reason:String}")
            params["reason"] = reason
        position = self._position("dlq", cursor, (int, int, int))
        if position is not None:
            where.append(f"(ts, dlq_partition, dlq_offset) < ({_TS % 'c_ts'}, {{c_p:UInt32}}, {{c_o:UInt64}})")
            params.update(c_ts=position[0], c_p=position[1], c_o=position[2])
        sql = ("SELECT dlq_partition, dlq_offset, toUnixTimestamp64Micro(ts) AS ts_us, reason, detail, "
               "tenant_topic, source_partition, source_offset, original_b64 "
               f"FROM dlq FINAL WHERE {' AND '.join(where)} "
               "ORDER BY ts DESC, dlq_partition DESC, dlq_offset DESC LIMIT {limit:UInt32}")
        rows = self._query(sql, {**params, "limit": limit + 1})
        return self._page("dlq", rows, limit,
                          lambda r: [int(r["ts_us"]), int(r["dlq_partition"]), int(r["dlq_offset"])],
                          lambda r: shapes.dead_letter(r, with_original))


def verify_rows(tenant_id: str, session_id: str, rows: list[dict[str, Any]],
                key_lookup: KeyLookup | None) -> dict[str, Any]:
    """The chain report of one session's stored rows (pure: the key lookup is injected)."""
    envelopes: list[Envelope] = []
    entries = []
    for r in rows:
        payload = r["payload"].encode("utf-8")
        env = Envelope(r["event_id"], tenant_id, r["agent_id"], r["session_id"], int(r["seq"]),
                       int(r["ts_us"]), r["type"], payload, _unhex(r["payload_sha256"]),
                       dict(r["attributes"]), r["key_id"], _unhex(r["signature"]))
        envelopes.append(env)
        entries.append((int(r["chain_index"]), _unhex(r["prev_hash"]), _unhex(r["entry_hash"]), signing_bytes(env)))
    first = entries[0][0]
    report = verify_chain(entries, anchor=GENESIS if first == 0 else None)
    payload_mismatch = [e.event_id for e in envelopes if e.payload and _sha256(e.payload) != e.payload_sha256]
    signatures: dict[str, Any] = {"checked": False, "valid": 0, "invalid": [], "unknown_key": []}
    if key_lookup is not None:
        signatures["checked"] = True
        cache: dict[tuple[str, str, int], bytes | None] = {}
        for env in envelopes:
            ident = (env.key_id, env.agent_id, env.ts)
            if ident not in cache:
                cache[ident] = key_lookup(tenant_id, env.key_id, env.ts, env.agent_id)
            public_key = cache[ident]
            if public_key is None:
                signatures["unknown_key"].append(env.event_id)
            elif verify_signature(env, public_key):
                signatures["valid"] += 1
            else:
                signatures["invalid"].append(env.event_id)
    chain_ok = report.ok
    ok = chain_ok and not payload_mismatch and not (signatures["invalid"] or signatures["unknown_key"])
    return {
        "session_id": session_id, "ok": ok, "chain_ok": chain_ok, "events": len(rows),
        "checked": report.checked, "starts_at_index": first, "from_genesis": first == 0,
        "head_index": report.state.index - 1, "head_hash": report.state.head.hex(),
        "failure": report.failure.where() if report.failure else None,
        "payload_mismatch": payload_mismatch, "signatures": signatures,
        "truncated": len(rows) >= MAX_VERIFY_EVENTS,
    }


def uuid7_micros(event_id: str) -> int | None:
    """The time (epoch micros, ms precision) inside a UUIDv7 text, or None for any other id."""
    text = event_id.replace("-", "")
    if len(text) != 32 or text[12] != "7":
        return None
    try:
        return int(text[:12], 16) * 1000
    except ValueError:
        return None


def _unhex(text: str) -> bytes:
    try:
        return bytes.fromhex(text)
    except ValueError:
        return b""


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()
