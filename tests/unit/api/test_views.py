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
