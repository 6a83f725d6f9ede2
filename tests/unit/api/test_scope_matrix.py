"""Route x scope matrix: each route answers only with its own scope or `*` (403 otherwise, 401 without
a valid key). The expectation is written out here, independently of agenttrail.api.scopes."""

from __future__ import annotations

from typing import Any

from agenttrail.api.state import ROUTES
from agenttrail.control.records import SCOPES


def expected_allowed(held: str, required: str) -> bool:
    if held in ("*", required):
        return True
    return held == "lessons:*" and required in ("lessons:read", "lessons:write")


def request_for(route: Any, world: Any) -> tuple[str, Any, dict[str, str]]:
    a = world.a
    path = (route.path.replace("{session_id}", a.session_ids[0]).replace("{event_id}", a.event_ids[0])
            .replace("{key_id}", "ak_aaaaaaaaaaaaaaaa")  # well-formed, unknown: allowed -> 404, never 403
            .replace("{name}", "agent_activity"))
    body = None
    if route.body is not None:
        body = {"scopes": ["events:read"]} if any(f.name == "scopes" for f in route.body) else {}
    query = {f.name: "x" for f in route.query if f.required}
    return path, body, query


async def test_route_scope_matrix(make_app: Any, seeded: Any, aiohttp_client: Any) -> None:
    app = make_app()
    client = await aiohttp_client(app)
    world = seeded.world
    scoped = [r for r in app[ROUTES].values() if r.scope is not None]
    assert scoped
    for route in scoped:
        path, body, query = request_for(route, world)
        for held in sorted(SCOPES):
            resp = await client.request(route.method, path, json=body, params=query,
                                        headers={"Authorization": f"Bearer {world.a.keys[held]}"})
            text = await resp.text()
            if expected_allowed(held, route.scope):
                assert resp.status in (200, 201, 404), (route.name, held, resp.status, text)
            else:
                assert resp.status == 403, (route.name, held, resp.status, text)
                assert (await resp.json())["error"] == "forbidden"
        for headers in ({}, {"Authorization": "Bearer at_live_" + "a" * 52}, {"Authorization": "Basic eDp5"},
                        {"Authorization": f"Bearer {world.a.keys['*']}x"}):
            resp = await client.request(route.method, path, json=body, params=query, headers=headers)
            assert resp.status == 401, (route.name, headers)
            assert (await resp.json())["error"] == "unauthorized"
            assert resp.headers["WWW-Authenticate"].startswith("Bearer")


async def test_public_routes_need_no_key(make_app: Any, aiohttp_client: Any) -> None:
    app = make_app()
    client = await aiohttp_client(app)
    for route in (r for r in app[ROUTES].values() if r.scope is None and r.method == "GET"):
        resp = await client.get(route.path)
        assert resp.status == 200, route.name


async def test_revoked_key_and_empty_scopes_grant_nothing(make_app: Any, seeded: Any, aiohttp_client: Any) -> None:
    from agenttrail.api.scopes import grants

    assert not grants([], "events:read")
    assert not grants(["bogus", "events:*"], "events:read")  # unknown scopes never widen access
    control = seeded.world.control
    info, secret = control.create_api_key("alpha", ["events:read"])
    client = await aiohttp_client(make_app())
    headers = {"Authorization": f"Bearer {secret}"}
    assert (await client.get("/api/events", headers=headers)).status == 200
    assert info.key_id in control.touched  # last-used is recorded through the control plane
    control.revoke_api_key(info.key_id)
    assert (await client.get("/api/events", headers=headers)).status == 401
