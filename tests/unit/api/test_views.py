"""Analyst views through the API: the tenant's own aggregates, checked against its stats."""

from __future__ import annotations

from typing import Any

from agenttrail.api.repository import ANALYST_VIEWS


def auth(world: Any, scope: str = "*") -> dict[str, str]:
    return {"Authorization": f"Bearer {world.a.keys[scope]}"}


async def test_every_view_answers_with_the_tenants_rows(make_app: Any, seeded: Any, aiohttp_client: Any) -> None:
    client = await aiohttp_client(make_app())
    world = seeded.world
    stats = await (await client.get("/api/stats?from=0", headers=auth(world))).json()
    for name in ANALYST_VIEWS:
        resp = await client.get(f"/api/views/{name}", headers=auth(world, "events:read"))
        assert resp.status == 200, await resp.text()
        body = await resp.json()
        assert body["view"] == name and body["rows"], name
        assert all("tenant_id" not in row for row in body["rows"])
    activity = await (await client.get("/api/views/agent_activity?limit=1000", headers=auth(world))).json()
    assert sum(int(r["events"]) for r in activity["rows"]) == stats["events"]


async def test_unknown_view_is_a_json_404_not_sql(make_app: Any, seeded: Any, aiohttp_client: Any) -> None:
    client = await aiohttp_client(make_app())
    resp = await client.get("/api/views/events%20FINAL", headers=auth(seeded.world))
    assert resp.status == 404
    assert (await resp.json())["error"] == "not_found"


async def test_stats_match_the_stored_rows_and_an_empty_window_is_zero(make_app: Any, seeded: Any,
                                                                        aiohttp_client: Any) -> None:
    """One pass with a grand-total grouping set: the totals must equal a direct count of the
    tenant's rows (and never include the other tenant's); a window with no events is all zeros."""
    client = await aiohttp_client(make_app())
    world = seeded.world
    stats = await (await client.get("/api/stats?from=0", headers=auth(world))).json()
    rows = seeded.store.query_rows(
        "SELECT type, count(), uniqExact(session_id) FROM events FINAL WHERE tenant_id = {t:String} GROUP BY type",
        {"t": world.a.tenant_id})
    assert stats["by_type"] == {t: int(n) for t, n, _ in rows}
    assert stats["events"] == sum(int(n) for _, n, _ in rows) > 0
    sessions = seeded.store.query_rows(
        "SELECT uniqExact(session_id) FROM events FINAL WHERE tenant_id = {t:String}", {"t": world.a.tenant_id})
    assert stats["sessions"] == int(sessions[0][0])
    empty = await (await client.get("/api/stats?from=4000000000000000&to=4000000000000001",
                                    headers=auth(world))).json()
    assert (empty["events"], empty["sessions"], empty["by_type"], empty["cost_usd"]) == (0, 0, {}, 0.0)
