"""Bad input is a 400 JSON error, never a 500; pagination, keys, registration, rate limits, auth-off."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from agenttrail import crypto
from agenttrail.api.cursor import CursorCodec


def auth(world: Any, scope: str = "*", tenant: str = "a") -> dict[str, str]:
    return {"Authorization": f"Bearer {getattr(world, tenant).keys[scope]}"}


async def expect_json_error(resp: Any, status: int) -> dict[str, Any]:
    assert resp.status == status, await resp.text()
    assert resp.content_type == "application/json"
    body = await resp.json()
    assert set(body) == {"error", "message"} and body["error"] and body["message"]
    return body


@pytest.mark.parametrize("query", [
    {"limit": "1001"}, {"limit": "100000000000000000000"}, {"limit": "0"}, {"limit": "-1"}, {"limit": "1e3"},
    {"limit": "abc"}, {"limit": ""}, {"cursor": "garbage"}, {"cursor": "a.b"}, {"cursor": "x" * 5000},
    {"from": "yesterday"}, {"from": "2026-13-45"}, {"from": "99999999999999999999"}, {"to": "-5"},
    {"from": "2026-02-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, {"from": "5", "to": "5"},
    {"type": "nonsense"}, {"session": "\u0000bad"}, {"text": "x" * 201}, {"unknown": "1"},
    {"limit": "1", "limit ": "2"},
])
async def test_bad_query_is_400(make_app: Any, seeded: Any, aiohttp_client: Any, query: dict[str, str]) -> None:
    client = await aiohttp_client(make_app())
    await expect_json_error(await client.get("/api/events", params=query, headers=auth(seeded.world)), 400)


async def test_repeated_parameter_is_400(make_app: Any, seeded: Any, aiohttp_client: Any) -> None:
    client = await aiohttp_client(make_app())
    await expect_json_error(await client.get("/api/events?limit=1&limit=2", headers=auth(seeded.world)), 400)


async def test_forged_and_foreign_cursors_are_400(make_app: Any, seeded: Any, aiohttp_client: Any) -> None:
    client = await aiohttp_client(make_app())
    world = seeded.world
    resp = await client.get("/api/events", params={"limit": "2"}, headers=auth(world))
    cursor = (await resp.json())["next_cursor"]
    _, mac = cursor.split(".")
    edited = base64.urlsafe_b64encode(b'[9999999999999999,"zzz",0]').decode().rstrip("=") + "." + mac
    other_key = CursorCodec(b"z" * 32).encode("alpha", "events", [1, "s", 0])
    other_kind = CursorCodec(b"k" * 32).encode("alpha", "sessions", [1, "s"])
    other_tenant = CursorCodec(b"k" * 32).encode("bravo", "events", [1, "s", 0])
    wrong_shape = CursorCodec(b"k" * 32).encode("alpha", "events", ["1", 2, "x"])
    for bad in (edited, other_key, other_kind, other_tenant, wrong_shape, cursor[:-2]):
        await expect_json_error(await client.get("/api/events", params={"cursor": bad}, headers=auth(world)), 400)


async def test_pagination_walks_every_event_once(make_app: Any, seeded: Any, aiohttp_client: Any) -> None:
    client = await aiohttp_client(make_app())
    world = seeded.world
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": "5", **({"cursor": cursor} if cursor else {})}
        page = await (await client.get("/api/events", params=params, headers=auth(world))).json()
        seen += [e["event_id"] for e in page["events"]]
        assert [e["ts"] for e in page["events"]] == sorted((e["ts"] for e in page["events"]), reverse=True)
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert sorted(seen) == sorted(world.a.event_ids) and len(seen) == len(set(seen))


async def test_filters_narrow_the_events(make_app: Any, seeded: Any, aiohttp_client: Any) -> None:
    client = await aiohttp_client(make_app())
    world = seeded.world
    sid = world.a.session_ids[1]
    page = await (await client.get("/api/events", params={"session": sid, "type": "llm_call"},
                                   headers=auth(world))).json()
    assert [(e["session_id"], e["type"], e["model"]) for e in page["events"]] == [(sid, "llm_call", "gpt-4o")]
    page = await (await client.get("/api/events", params={"text": "QUESTION NUMBER 2"}, headers=auth(world))).json()
    assert len(page["events"]) == 1
    assert page["events"][0]["payload"]["text"].endswith("question number 2 about invoices")
    page = await (await client.get("/api/events", params={"from": "2020-01-01", "to": "2020-01-02"},
                                   headers=auth(world))).json()
    assert page == {"events": [], "next_cursor": None}


@pytest.mark.parametrize("body", [b"{not json", b"[1,2]", b'"scopes"', b'{"scopes": "events:read"}',
                                  b'{"scopes": []}', b'{"scopes": ["root"]}', b'{"scopes": ["*"], "name": 5}',
                                  b'{"scopes": ["*"], "expires_at": "soon"}', b'{"scopes": ["*"], "extra": 1}',
                                  b'{"scopes": ["*", "*"]}', b'{"scopes": ["*"], "expires_at": 1}', b"\xff\xfe"])
async def test_bad_bodies_are_400(make_app: Any, seeded: Any, aiohttp_client: Any, body: bytes) -> None:
    client = await aiohttp_client(make_app())
    headers = {**auth(seeded.world), "Content-Type": "application/json"}
    await expect_json_error(await client.post("/api/keys", data=body, headers=headers), 400)


async def test_oversize_body_unknown_path_and_method(make_app: Any, seeded: Any, aiohttp_client: Any) -> None:
    client = await aiohttp_client(make_app())
    await expect_json_error(await client.post("/api/keys", data=b"{" + b" " * 100_000 + b"}",
                                              headers=auth(seeded.world)), 413)
    await expect_json_error(await client.get("/api/nothing", headers=auth(seeded.world)), 404)
    await expect_json_error(await client.put("/api/events", headers=auth(seeded.world)), 405)
    await expect_json_error(await client.get("/api/sessions/%00/events", headers=auth(seeded.world)), 404)


async def test_verify_detects_the_tampered_session(make_app: Any, seeded: Any, aiohttp_client: Any) -> None:
    client = await aiohttp_client(make_app())
    world = seeded.world
    good = await (await client.get(f"/api/sessions/{world.a.session_ids[0]}/verify", headers=auth(world))).json()
    assert good["ok"] and good["signatures"] == {"checked": True, "valid": 7, "invalid": [], "unknown_key": []}
    bad = await (await client.get(f"/api/sessions/{world.tampered_session}/verify", headers=auth(world))).json()
    assert not bad["ok"] and bad["failure"]["chain_index"] == 2 and bad["checked"] == 2
    assert len(bad["signatures"]["invalid"]) == 1


async def test_key_lifecycle_stays_in_the_tenant(make_app: Any, seeded: Any, aiohttp_client: Any) -> None:
    client = await aiohttp_client(make_app())
    world = seeded.world
    admin = auth(world, "keys:admin")
    created = await client.post("/api/keys", json={"scopes": ["events:read"], "name": "ci"}, headers=admin)
    assert created.status == 201
    new = await created.json()
    assert new["secret"].startswith("at_live_") and new["key"]["tenant_id"] == "alpha"
    events = await client.get("/api/events", headers={"Authorization": f"Bearer {new['secret']}"})
    assert events.status == 200
    listed = await (await client.get("/api/keys", headers=admin)).json()
    assert {k["tenant_id"] for k in listed["keys"]} == {"alpha"}
    assert new["key"]["key_id"] in {k["key_id"] for k in listed["keys"]}
    rotated = await (await client.post(f"/api/keys/{new['key']['key_id']}/rotate", json={"grace_seconds": 0},
                                       headers=admin)).json()
    assert rotated["key"]["rotated_from"] == new["key"]["key_id"]
    revoked = await client.delete(f"/api/keys/{rotated['key']['key_id']}", headers=admin)
    assert (await revoked.json())["status"] == "revoked"
    b_key = world.b.key_ids["events:read"]
    await expect_json_error(await client.delete(f"/api/keys/{b_key}", headers=admin), 404)
    await expect_json_error(await client.post(f"/api/keys/{b_key}/rotate", json={}, headers=admin), 404)


async def test_agent_registration_with_rk_key(make_app: Any, seeded: Any, aiohttp_client: Any) -> None:
    client = await aiohttp_client(make_app())
    rk = seeded.world.control.create_registration_key("alpha")
    pk = base64.b64encode(crypto.SigningKey.generate().public_key).decode()
    body = {"registration_key": rk, "public_key": pk, "fingerprint": "fp-x"}
    resp = await client.post("/api/agents/register", json=body)
    assert resp.status == 200, await resp.text()
    got = await resp.json()
    assert got["tenant_id"] == "alpha" and got["agent_id"].startswith("ag_")
    await expect_json_error(await client.post("/api/agents/register", json=body), 401)  # single use
    await expect_json_error(await client.post("/api/agents/register", json={**body, "public_key": "!!"}), 400)


async def test_agent_registration_refuses_a_key_no_signature_could_verify(make_app: Any, seeded: Any,
                                                                          aiohttp_client: Any) -> None:
    """32 bytes that are not a point of prime order (here of order 4, y = 0): a 400 that says so,
    and the registration key is not used up by it."""
    client = await aiohttp_client(make_app())
    rk = seeded.world.control.create_registration_key("alpha")
    body = {"registration_key": rk, "public_key": base64.b64encode(bytes(32)).decode(), "fingerprint": "fp-x"}
    resp = await client.post("/api/agents/register", json=body)
    assert resp.status == 400 and "not a usable Ed25519 public key" in (await resp.json())["message"]
    good = {**body, "public_key": base64.b64encode(crypto.SigningKey.generate().public_key).decode()}
    assert (await client.post("/api/agents/register", json=good)).status == 200


async def test_rate_limit_is_429_with_retry_after(make_app: Any, seeded: Any, aiohttp_client: Any) -> None:
    client = await aiohttp_client(make_app(rate_per_s=0.5, burst=3))
    statuses = [(await client.get("/api/stats", headers=auth(seeded.world, "events:read"))).status
                for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    resp = await client.get("/api/stats", headers=auth(seeded.world, "events:read"))
    body = await expect_json_error(resp, 429)
    assert body["error"] == "rate_limited" and int(resp.headers["Retry-After"]) >= 1
    # Another key has its own bucket.
    assert (await client.get("/api/stats", headers=auth(seeded.world, "*"))).status == 200


async def test_auth_disabled_is_tenant_default_with_a_warning(make_app: Any, aiohttp_client: Any) -> None:
    client = await aiohttp_client(make_app(auth_disabled=True))
    health = await (await client.get("/health")).json()
    assert health["auth"] == "disabled" and health["warnings"]
    page = await (await client.get("/api/events", params={"from": "0"})).json()
    assert page == {"events": [], "next_cursor": None}  # tenant "default" holds nothing here


async def test_recall_without_vector_store_is_503(make_app: Any, seeded: Any, aiohttp_client: Any) -> None:
    client = await aiohttp_client(make_app(lance=None))
    await expect_json_error(await client.get("/api/recall", params={"q": "x"}, headers=auth(seeded.world)), 503)
