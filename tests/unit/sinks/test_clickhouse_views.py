"""Each analyst view against expectations computed independently in Python (55k events, 3 tenants).

The dataset goes in through the writer, then a slice of it goes in a second time with different
batch boundaries (what a restart after kill -9 does): the views must not count anything twice.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest

from agenttrail.schemas.ledger import LedgerRecord
from agenttrail.sinks.clickhouse.schema import open_store
from agenttrail.sinks.clickhouse.store import ClickHouseStore
from agenttrail.sinks.clickhouse.synthetic import SyntheticSpec, generate
from agenttrail.sinks.clickhouse.writer import ClickHouseSink

FOREVER = 36_500
SPEC = SyntheticSpec(tenants=("acme", "globex", "initech"), events=55_000, seed=11)


@pytest.fixture(scope="module")
def records() -> list[LedgerRecord]:
    return list(generate(SPEC))


@pytest.fixture(scope="module")
def store(chdb_url: str, records: list[LedgerRecord]) -> Iterator[ClickHouseStore]:
    store = open_store(chdb_url, database="views")
    sink = ClickHouseSink(store, batch_rows=7_000, max_age_s=1e9, retention_days=FOREVER)
    for offset, rec in enumerate(records):
        sink.add_ledger("agenttrail.all.ledger", 0, offset, rec)
        if sink.due():
            sink.flush()
    sink.flush(force=True)
    # Replay a middle slice with other boundaries: new dedup tokens, so physical duplicates.
    again = ClickHouseSink(store, batch_rows=3_333, max_age_s=1e9, retention_days=FOREVER)
    for offset in range(10_001, 20_001):
        again.add_ledger("agenttrail.all.ledger", 0, offset, records[offset])
    again.flush(force=True)
    yield store
    store.close()


def _hour(ts: int) -> datetime:
    return datetime.fromtimestamp(ts // 3_600_000_000 * 3600, UTC).replace(tzinfo=None)


def _day(ts: int) -> date:
    return datetime.fromtimestamp(ts // 1_000_000, UTC).date()


def _body(rec: LedgerRecord) -> dict[str, object]:
    return json.loads(rec.envelope.payload)


def _is_error(rec: LedgerRecord) -> bool:
    env = rec.envelope
    return env.type == "error" or (env.type == "tool_result" and _body(rec)["status"] == "error")


def test_duplicates_really_exist_physically(store: ClickHouseStore, records: list[LedgerRecord]) -> None:
    raw = store.command("SELECT count() FROM events")
    final = store.command("SELECT count() FROM events FINAL")
    assert final == len(records)
    assert raw >= final  # a merge may already have collapsed some; FINAL must be exact either way


def test_tool_usage_per_hour(store: ClickHouseStore, records: list[LedgerRecord]) -> None:
    expected: dict[tuple[str, datetime, str], list[float]] = defaultdict(lambda: [0, 0, 0, 0.0])
    for rec in records:
        env = rec.envelope
        if env.type not in ("tool_call", "tool_result"):
            continue
        body = _body(rec)
        acc = expected[(env.tenant_id, _hour(env.ts), str(body["tool"]))]
        if env.type == "tool_call":
            acc[0] += 1
        else:
            acc[1] += 1
            acc[2] += body["status"] == "error"
            acc[3] += float(body["latency_ms"])  # type: ignore[arg-type]
    rows = store.query_rows(
        "SELECT tenant_id, hour, tool, calls, results, errors, avg_latency_ms FROM v_tool_usage_hourly"
    )
    got = {(t, h, tool): (c, r, e, avg) for t, h, tool, c, r, e, avg in rows}
    assert set(got) == set(expected)
    for key, (calls, results, errors, latency_sum) in expected.items():
        c, r, e, avg = got[key]
        assert (c, r, e) == (calls, results, errors)
        assert avg == pytest.approx(latency_sum / results if results else 0.0)


def test_llm_tokens_and_cost_per_day_per_model(store: ClickHouseStore, records: list[LedgerRecord]) -> None:
    expected: dict[tuple[str, date, str], list[float]] = defaultdict(lambda: [0, 0, 0, 0.0])
    for rec in records:
        if rec.envelope.type != "llm_call":
            continue
        body = _body(rec)
        acc = expected[(rec.envelope.tenant_id, _day(rec.envelope.ts), str(body["model"]))]
        acc[0] += 1
        acc[1] += int(body["prompt_tokens"])  # type: ignore[call-overload]
        acc[2] += int(body["completion_tokens"])  # type: ignore[call-overload]
        acc[3] += float(body["cost_usd"])  # type: ignore[arg-type]
    rows = store.query_rows(
        "SELECT tenant_id, day, model, calls, prompt_tokens, completion_tokens, total_tokens, cost_usd "
        "FROM v_llm_daily"
    )
    got = {(t, d, m): rest for t, d, m, *rest in rows}
    assert set(got) == set(expected)
    for key, (calls, prompt, completion, cost) in expected.items():
        c, p, comp, total, usd = got[key]
        assert (c, p, comp, total) == (calls, prompt, completion, prompt + completion)
        assert usd == pytest.approx(cost, rel=1e-9)


def test_error_rate_per_agent(store: ClickHouseStore, records: list[LedgerRecord]) -> None:
    expected: dict[tuple[str, date, str], list[int]] = defaultdict(lambda: [0, 0])
    for rec in records:
        env = rec.envelope
        acc = expected[(env.tenant_id, _day(env.ts), env.agent_id)]
        acc[0] += 1
        acc[1] += _is_error(rec)
    rows = store.query_rows("SELECT tenant_id, day, agent_id, events, errors, error_rate FROM v_agent_errors")
    got = {(t, d, a): (n, e, rate) for t, d, a, n, e, rate in rows}
    assert set(got) == set(expected)
    assert sum(e for _, e, _ in got.values()) > 0
    for key, (events, errors) in expected.items():
        n, e, rate = got[key]
        assert (n, e) == (events, errors)
        assert rate == pytest.approx(errors / events)


def test_agent_activity(store: ClickHouseStore, records: list[LedgerRecord]) -> None:
    sessions: dict[tuple[str, date, str], set[str]] = defaultdict(set)
    counts: dict[tuple[str, date, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for rec in records:
        env = rec.envelope
        key = (env.tenant_id, _day(env.ts), env.agent_id)
        sessions[key].add(env.session_id)
        counts[key][0] += 1
        counts[key][1] += env.type == "llm_call"
        counts[key][2] += env.type == "tool_call"
    rows = store.query_rows(
        "SELECT tenant_id, day, agent_id, sessions, events, llm_calls, tool_calls FROM v_agent_activity"
    )
    got = {(t, d, a): tuple(rest) for t, d, a, *rest in rows}
    assert set(got) == set(counts)
    for key, (events, llm, tools) in counts.items():
        assert got[key] == (len(sessions[key]), events, llm, tools)


def _expected_sessions(records: list[LedgerRecord]) -> dict[tuple[str, str], dict[str, object]]:
    out: dict[tuple[str, str], dict[str, object]] = {}
    for rec in records:
        env = rec.envelope
        s = out.setdefault((env.tenant_id, env.session_id), {
            "events": 0, "head_index": -1, "head_hash": "", "llm_calls": 0, "tokens": 0, "cost": 0.0,
            "tool_calls": 0, "errors": 0, "ended": 0, "first": env.ts, "last": env.ts,
        })
        s["events"] += 1  # type: ignore[operator]
        if rec.chain_index > s["head_index"]:  # type: ignore[operator]
            s["head_index"], s["head_hash"] = rec.chain_index, rec.entry_hash.hex()
        s["first"] = min(s["first"], env.ts)  # type: ignore[type-var]
        s["last"] = max(s["last"], env.ts)  # type: ignore[type-var]
        s["llm_calls"] += env.type == "llm_call"  # type: ignore[operator]
        s["tool_calls"] += env.type == "tool_call"  # type: ignore[operator]
        s["errors"] += _is_error(rec)  # type: ignore[operator]
        s["ended"] = max(s["ended"], int(env.type == "session_end"))  # type: ignore[call-overload]
        if env.type == "llm_call":
            body = _body(rec)
            s["tokens"] += int(body["prompt_tokens"]) + int(body["completion_tokens"])  # type: ignore[operator,call-overload]
            s["cost"] += float(body["cost_usd"])  # type: ignore[operator,arg-type]
    return out


def _micros(value: datetime) -> int:
    return int(value.replace(tzinfo=UTC).timestamp()) * 1_000_000 + value.microsecond


def test_session_summary(store: ClickHouseStore, records: list[LedgerRecord]) -> None:
    expected = _expected_sessions(records)
    rows = store.query_dicts("SELECT * FROM v_session_summary")
    assert len(rows) == len(expected)
    for row in rows:
        s = expected[(row["tenant_id"], row["session_id"])]
        assert row["events"] == s["events"]
        assert (row["head_index"], row["head_hash"]) == (s["head_index"], s["head_hash"])
        assert (row["llm_calls"], row["tool_calls"], row["errors"], row["ended"]) == (
            s["llm_calls"], s["tool_calls"], s["errors"], s["ended"])
        assert row["prompt_tokens"] + row["completion_tokens"] == s["tokens"]
        assert row["cost_usd"] == pytest.approx(s["cost"], rel=1e-9, abs=1e-12)
        assert (_micros(row["started_at"]), _micros(row["last_ts"])) == (s["first"], s["last"])


def test_materialized_sessions_match_despite_duplicates(
    store: ClickHouseStore, records: list[LedgerRecord]
) -> None:
    expected = _expected_sessions(records)
    rows = store.query_dicts("SELECT * FROM v_sessions")
    assert len(rows) == len(expected)
    for row in rows:
        s = expected[(row["tenant_id"], row["session_id"])]
        assert (row["events"], row["head_index"], row["head_hash"]) == (
            s["events"], s["head_index"], s["head_hash"])
        assert (row["llm_calls"], row["tool_calls"], row["errors"], row["ended"]) == (
            s["llm_calls"], s["tool_calls"], s["errors"], s["ended"])


def test_tenant_filter_with_bound_parameter(store: ClickHouseStore, records: list[LedgerRecord]) -> None:
    for tenant in SPEC.tenants:
        n = sum(1 for r in records if r.envelope.tenant_id == tenant)
        got = store.query_rows(
            "SELECT sum(events) FROM v_agent_activity WHERE tenant_id = {t:String}", {"t": tenant}
        )
        assert got == [(n,)]
    hostile = "acme' OR '1'='1"
    assert store.query_rows(
        "SELECT count() FROM v_session_summary WHERE tenant_id = {t:String}", {"t": hostile}
    ) == [(0,)]
