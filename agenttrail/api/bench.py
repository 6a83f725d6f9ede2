"""`agenttrail bench api`: p50/p95/p99 of the main API queries at 1 M stored events.

Seeds the store with the ClickHouse synthetic generator (3 tenants, 72 h, ~40 events per session)
unless it already holds that many events, then times each repository query (the SQL the API
runs, without HTTP) with randomized sessions, agents and 24 h windows inside the data.
"""

from __future__ import annotations

import random
import secrets
import statistics
import time
from collections.abc import Callable
from typing import Any

from agenttrail.api.cursor import CursorCodec
from agenttrail.api.repository import EventFilter, TenantRepository, TimeRange
from agenttrail.sinks.clickhouse.rows import EVENT_COLUMNS, event_row
from agenttrail.sinks.clickhouse.store import ClickHouseStore
from agenttrail.sinks.clickhouse.synthetic import START_US, SyntheticSpec, generate

HOUR_US = 3_600_000_000
SPAN_HOURS = 72
TENANTS = ("acme", "globex", "initech")


def seed(store: ClickHouseStore, n_events: int, batch: int = 50_000) -> float:
    """Insert `n_events` synthetic events (seconds taken); skipped when the store already has them."""
    have = int(store.command("SELECT count() FROM events"))
    if have >= n_events:
        return 0.0
    started = time.perf_counter()
    rows: list[tuple[Any, ...]] = []
    spec = SyntheticSpec(tenants=TENANTS, events=n_events, span_hours=SPAN_HOURS, seed=3)
    for offset, rec in enumerate(generate(spec)):
        rows.append(event_row(rec, 0, offset, 36_500))
        if len(rows) >= batch:
            store.insert("events", rows, EVENT_COLUMNS)
            rows = []
    store.insert("events", rows, EVENT_COLUMNS)
    store.command("OPTIMIZE TABLE events FINAL")
    return time.perf_counter() - started


def _percentiles(samples: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return {"p50_ms": cuts[49] * 1000, "p95_ms": cuts[94] * 1000, "p99_ms": cuts[98] * 1000}


def bench_api(store: ClickHouseStore, n_events: int = 1_000_000, iterations: int = 60) -> dict[str, Any]:
    seed_s = seed(store, n_events)
    rng = random.Random(11)
    tenant = TENANTS[0]
    repo = TenantRepository(store, None, tenant, cursors=CursorCodec(secrets.token_bytes(32)))
    sessions = [r[0] for r in store.query_rows(
        "SELECT session_id FROM events WHERE tenant_id = {t:String} AND chain_index = 0 LIMIT 2000", {"t": tenant})]
    event_ids = [r[0] for r in store.query_rows(
        "SELECT event_id FROM events WHERE tenant_id = {t:String} LIMIT 2000", {"t": tenant})]

    def window() -> TimeRange:
        start = START_US + rng.randrange(0, (SPAN_HOURS - 24) * HOUR_US)
        return TimeRange(start, start + 24 * HOUR_US)

    second_pages = []
    for _ in range(iterations + 1):
        f = EventFilter(window())
        second_pages.append((f, repo.events(f, 100).next_cursor))

    def events_page2() -> object:
        f, cursor = second_pages.pop()
        return repo.events(f, 100, cursor)

    queries: dict[str, Callable[[], object]] = {
        "events_24h": lambda: repo.events(EventFilter(window()), 100),
        "events_24h_page2": events_page2,
        "events_agent_type": lambda: repo.events(
            EventFilter(window(), agent=f"agent-{rng.randrange(5)}", type="llm_call"), 100),
        "events_session": lambda: repo.events(EventFilter(TimeRange(0, 9_000_000_000_000_000),
                                                          session=rng.choice(sessions)), 100),
        "events_text": lambda: repo.events(EventFilter(window(), text="boom"), 100),
        "event_by_id": lambda: repo.event(rng.choice(event_ids)),
        "sessions_24h": lambda: repo.sessions(window(), 100),
        "session": lambda: repo.session(rng.choice(sessions)),
        "session_events": lambda: repo.session_events(rng.choice(sessions), 100),
        "session_verify": lambda: repo.verify_session(rng.choice(sessions)),
        "stats_24h": lambda: repo.stats(window()),
        "lessons": lambda: repo.lessons(EventFilter(TimeRange(0, 9_000_000_000_000_000)), 100),
    }
    result: dict[str, Any] = {"events": n_events, "seed_s": round(seed_s, 1), "iterations": iterations}
    for name, run in queries.items():
        run()  # warm-up
        samples = []
        for _ in range(iterations):
            started = time.perf_counter()
            run()
            samples.append(time.perf_counter() - started)
        result[name] = {k: round(v, 2) for k, v in _percentiles(samples).items()}
    return result
