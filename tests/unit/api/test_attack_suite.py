"""Cross-tenant attack suite, generated from the route table.

For every route the app serves, tenant A's `*` key replays tenant B's ids (path parameters),
filters, cursors minted for B, recall queries whose exact best match is B's text, and B's key
ids; every response body is scanned for B's unique strings. A route whose inputs the suite does
not know how to attack fails the suite, so a new route is covered the day it is added.
"""

from __future__ import annotations

import base64
from typing import Any

from aiohttp import web

from agenttrail import crypto
from agenttrail.api.routes import Route
from agenttrail.api.state import ROUTES


def b_path_values(world: Any) -> dict[str, list[str]]:
    b = world.b
    from agenttrail.api.repository import ANALYST_VIEWS

    return {"session_id": b.session_ids[:2], "event_id": b.event_ids[:3], "key_id": list(b.key_ids.values())[:3],
            "name": sorted(ANALYST_VIEWS)}  # every analyst view: A's key must see only A's rows


def b_query_values(world: Any, cursors: dict[str, str]) -> dict[str, list[str]]:
    b = world.b
    return {
        "session": b.session_ids[:2], "agent": [b.agent_id], "text": [b.marker], "q": [b.texts[0], b.marker],
        "type": ["lesson", "message"], "model": ["gpt-4o"], "tool": ["search"], "reason": ["bad_signature"],
        "from": ["0"], "to": ["9000000000000000"], "limit": ["1000"], "k": ["100"], "original": ["true"],
        "cursor": list(cursors.values()) or ["x"],
    }


def b_bodies(world: Any, route: Route) -> list[dict[str, Any]]:
    assert route.body is not None
    names = {f.name for f in route.body}
    if names == {"registration_key", "public_key", "fingerprint"}:
        pk = base64.b64encode(crypto.SigningKey.generate().public_key).decode()
        return [{"registration_key": world.b.used_rk, "public_key": pk, "fingerprint": "fp-attacker"}]
    if "scopes" in names:
        return [{"scopes": ["*"], "name": "attacker"}]
    if "grace_seconds" in names:
        return [{"grace_seconds": 0}, {}]
    raise AssertionError(f"the attack suite does not know how to attack the body of {route.name}: add it")


async def mint_b_cursors(client: Any, world: Any, routes: list[Route]) -> dict[str, str]:
    """For every route that pages, a cursor minted for tenant B by B's own request."""
    out: dict[str, str] = {}
    headers = {"Authorization": f"Bearer {world.b.keys['*']}"}
    for route in routes:
        if not any(f.name == "cursor" for f in route.query) or route.method != "GET":
            continue
        path = route.path
        for name, values in b_path_values(world).items():
            path = path.replace("{" + name + "}", values[0])
        params = {"limit": "1"}
        if any(f.name == "from" for f in route.query):
            params["from"] = "0"
        resp = await client.get(path, params=params, headers=headers)
        assert resp.status == 200, (route.name, await resp.text())
        cursor = (await resp.json()).get("next_cursor")
        assert cursor, f"B's data should span more than one page of {route.name}"
        out[route.name] = cursor
    return out


def attack_requests(route: Route, world: Any, cursors: dict[str, str]) -> list[tuple[str, dict[str, str], Any]]:
    path_values = b_path_values(world)
    query_values = b_query_values(world, cursors)
    paths = [route.path]
    for field in route.path_params:
        assert field.name in path_values, f"no attack values for path parameter {field.name} of {route.name}"
        paths = [p.replace("{" + field.name + "}", v) for p in paths for v in path_values[field.name]]
    queries: list[dict[str, str]] = [{}]
    combined: dict[str, str] = {}
    for field in route.query:
        assert field.name in query_values, f"no attack values for query parameter {field.name} of {route.name}"
        values = query_values[field.name]
        if field.name == "cursor":
            values = [cursors.get(route.name, values[0])]
        queries += [{field.name: v} for v in values]
        if field.name != "cursor":
            combined[field.name] = values[0]
    if combined:
        queries.append(combined)
    bodies = b_bodies(world, route) if route.body is not None else [None]
    return [(p, q, b) for p in paths for q in queries for b in bodies]


async def test_tenant_a_never_sees_a_byte_of_tenant_b(make_app: Any, seeded: Any, aiohttp_client: Any) -> None:
    app: web.Application = make_app()
    client = await aiohttp_client(app)
    world = seeded.world
    routes = list(app[ROUTES].values())
    assert len(routes) >= 19
    cursors = await mint_b_cursors(client, world, routes)
    secrets = [s for s in world.b.secrets_of() if s]
    headers = {"Authorization": f"Bearer {world.a.keys['*']}"}
    attempts = 0
    for route in routes:
        for path, query, body in attack_requests(route, world, cursors):
            resp = await client.request(route.method, path, params=query, json=body, headers=headers)
            text = await resp.text()
            attempts += 1
            assert resp.status < 500, (route.name, path, query, resp.status, text)
            leaked = [s for s in secrets if s in text]
            assert not leaked, f"{route.method} {path} {query} leaked tenant B data: {leaked}"
            if "cursor" in query and query["cursor"] in cursors.values():
                assert resp.status == 400, (route.name, "a cursor minted for B must be refused")
    assert attempts > 60
    # B's keys were not rotated or revoked by A's attempts.
    with world.control.read() as view:
        assert all(view.api_key(k).status(0) == "active" for k in world.b.key_ids.values())


async def test_the_scan_would_see_b_data(make_app: Any, seeded: Any, aiohttp_client: Any) -> None:
    """The same requests made with B's own key do show B's markers: the scan above is meaningful."""
    app: web.Application = make_app()
    client = await aiohttp_client(app)
    world = seeded.world
    routes = [r for r in app[ROUTES].values() if r.scope is not None and r.method == "GET"]
    headers = {"Authorization": f"Bearer {world.b.keys['*']}"}
    seen = set()
    for route in routes:
        for path, query, _ in attack_requests(route, world, {}):
            if "cursor" in query:
                continue
            resp = await client.get(path, params=query, headers=headers)
            if world.b.marker in await resp.text() or world.b.session_ids[0] in await resp.text():
                seen.add(route.name)
    assert {"list_events", "get_event", "list_sessions", "get_session", "session_events", "verify_session",
            "recall", "dlq", "lessons", "list_keys"} <= seen


async def test_recall_best_match_of_b_text_stays_in_a(make_app: Any, seeded: Any, aiohttp_client: Any) -> None:
    client = await aiohttp_client(make_app())
    world = seeded.world
    for text in world.b.texts:
        resp = await client.get("/api/recall", params={"q": text, "k": "100"},
                                headers={"Authorization": f"Bearer {world.a.keys['recall:read']}"})
        hits = (await resp.json())["hits"]
        assert hits and all(h["event_id"] in world.a.event_ids for h in hits)
    # ...while B asking the same gets its own exact text first (score 1.0).
    resp = await client.get("/api/recall", params={"q": world.b.texts[0]},
                            headers={"Authorization": f"Bearer {world.b.keys['recall:read']}"})
    best = (await resp.json())["hits"][0]
    assert best["text"] == world.b.texts[0] and best["score"] > 0.999
