"""The route table: one declaration per route (method, path, handler, scope, inputs, response).

The router, the scope check, the input validation, the OpenAPI document and the cross-tenant test
suite all read `ROUTE_TABLE`. Handlers get validated inputs and `request[REPO]` (the caller's
tenant repository); they never see SQL or choose a tenant.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

from aiohttp import web

from agenttrail.api import openapi as oa
from agenttrail.api.errors import BadRequest, Unavailable
from agenttrail.api.params import Field
from agenttrail.api.repository import ANALYST_VIEWS, EventFilter, TimeRange
from agenttrail.api.shapes import b64_public_key
from agenttrail.api.state import PRINCIPAL, REPO, ROUTES, SERVICES
from agenttrail.control.records import SCOPES
from agenttrail.control.view import ApiKeyInfo
from agenttrail.metrics import METRICS
from agenttrail.schemas.envelope import EVENT_TYPES
from agenttrail.sinks.lancedb import MAX_K

DAY_US = 86_400_000_000
DEFAULT_WINDOW_US = DAY_US
Params = dict[str, Any]
RouteHandler = Callable[[web.Request, Params], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Route:
    name: str
    method: str
    path: str
    handler: RouteHandler
    scope: str | None  # None: public (no bearer key)
    summary: str
    tag: str = "trail"
    query: tuple[Field, ...] = ()
    path_params: tuple[Field, ...] = ()
    body: tuple[Field, ...] | None = None
    response: dict[str, Any] | None = None
    status: int = 200
    content_type: str = "application/json"
    may_be_unavailable: bool = False
    limit_by_ip: bool = False


async def run(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Blocking store/control-plane calls run off the event loop."""
    return await asyncio.to_thread(fn, *args, **kwargs)


def time_range(p: Params, default_window_us: int = DEFAULT_WINDOW_US) -> TimeRange:
    now = time.time_ns() // 1000
    end = p.get("to") if p.get("to") is not None else now + 1
    start = p.get("from") if p.get("from") is not None else max(0, end - default_window_us)
    if start >= end:
        raise BadRequest("from must be earlier than to")
    return TimeRange(start, end)


# ---- shared field declarations -------------------------------------------------------------------
ID = r"^[A-Za-z0-9][A-Za-z0-9._:@/+=-]{0,255}$"
LIMIT = Field("limit", "integer", minimum=1, maximum=1000, default=100, description="page size (≤ 1000)")
CURSOR = Field("cursor", "string", max_length=1024, description="next_cursor of the previous page")
FROM = Field("from", "time", description="start (inclusive); default: `to` minus 24 h")
TO = Field("to", "time", description="end (exclusive); default: now")
AGENT = Field("agent", "string", pattern=ID)
SESSION_ID = Field("session_id", "string", pattern=ID)
KEY_ID = Field("key_id", "string", pattern=r"^ak_[a-z2-7]{1,64}$")
EVENT_FILTERS = (FROM, TO, AGENT, Field("session", "string", pattern=ID),
                 Field("type", "string", choices=EVENT_TYPES), Field("model", "string", max_length=128),
                 Field("tool", "string", max_length=128),
                 Field("text", "string", max_length=200, description="case-insensitive substring of the payload"),
                 LIMIT, CURSOR)


def event_filter(p: Params, window: int = DEFAULT_WINDOW_US) -> EventFilter:
    return EventFilter(time_range(p, window), agent=p.get("agent"), session=p.get("session"),
                       type=p.get("type"), model=p.get("model"), tool=p.get("tool"), text=p.get("text"))


# ---- trail --------------------------------------------------------------------------------------------
async def list_events(request: web.Request, p: Params) -> Any:
    page = await run(request[REPO].events, event_filter(p), p["limit"], p["cursor"])
    return page.to_json("events")


async def get_event(request: web.Request, p: Params) -> Any:
    return await run(request[REPO].event, p["event_id"])


async def list_sessions(request: web.Request, p: Params) -> Any:
    page = await run(request[REPO].sessions, time_range(p), p["limit"], p["cursor"], p["agent"])
    return page.to_json("sessions")


async def get_session(request: web.Request, p: Params) -> Any:
    return await run(request[REPO].session, p["session_id"])


async def session_events(request: web.Request, p: Params) -> Any:
    page = await run(request[REPO].session_events, p["session_id"], p["limit"], p["cursor"])
    return page.to_json("events")


async def verify_session(request: web.Request, p: Params) -> Any:
    return await run(request[REPO].verify_session, p["session_id"])


async def recall(request: web.Request, p: Params) -> Any:
    hits = await run(request[REPO].recall, p["q"], p["k"], p["type"])
    return {"hits": hits}


async def checkpoints(request: web.Request, p: Params) -> Any:
    return (await run(request[REPO].checkpoints, p["limit"], p["cursor"])).to_json("checkpoints")


async def analyst_view(request: web.Request, p: Params) -> Any:
    return {"view": p["name"], "rows": await run(request[REPO].view, p["name"], p["limit"])}


async def stats(request: web.Request, p: Params) -> Any:
    return await run(request[REPO].stats, time_range(p))


async def dead_letters(request: web.Request, p: Params) -> Any:
    page = await run(request[REPO].dead_letters, time_range(p, 7 * DAY_US), p["limit"], p["cursor"],
                     p["reason"], p["original"])
    return page.to_json("dead_letters")


async def lessons(request: web.Request, p: Params) -> Any:
    all_time = p.get("from") is None
    f = event_filter(p, window=(time.time_ns() // 1000 + 1) if all_time else DEFAULT_WINDOW_US)
    return (await run(request[REPO].lessons, f, p["limit"], p["cursor"])).to_json("lessons")


async def audit_verify(request: web.Request, p: Params) -> Any:
    services = request.app[SERVICES]
    if services.audit_verify is None:
        raise Unavailable("audit verification is not available in this process")
    report = await run(services.audit_verify, services.store, services.registry_view,
                       request[PRINCIPAL].tenant_id, p["session"])
    return report.to_json()


# ---- keys and agents ----------------------------------------------------------------------------------
def _control(request: web.Request) -> Any:
    control = request.app[SERVICES].control
    if control is None:
        raise Unavailable("this process has no control plane")
    return control


def key_json(info: ApiKeyInfo) -> dict[str, Any]:
    return {**asdict(info), "scopes": list(info.scopes), "status": info.status(time.time_ns() // 1000)}


async def list_keys(request: web.Request, p: Params) -> Any:
    infos = await run(_control(request).api_keys, request[PRINCIPAL].tenant_id)
    return {"keys": [key_json(i) for i in infos]}


async def create_key(request: web.Request, p: Params) -> Any:
    info, secret = await run(_control(request).create_api_key, request[PRINCIPAL].tenant_id, list(p["scopes"]),
                             name=p["name"] or "", expires_at=p["expires_at"])
    return {"key": key_json(info), "secret": secret}


async def rotate_key(request: web.Request, p: Params) -> Any:
    info, secret = await run(_control(request).rotate_api_key, p["key_id"], grace_seconds=p["grace_seconds"],
                             tenant_id=request[PRINCIPAL].tenant_id)
    return {"key": key_json(info), "secret": secret}


async def revoke_key(request: web.Request, p: Params) -> Any:
    return key_json(await run(_control(request).revoke_api_key, p["key_id"],
                              tenant_id=request[PRINCIPAL].tenant_id))


async def register_agent(request: web.Request, p: Params) -> Any:
    try:
        public_key = b64_public_key(p["public_key"])
    except ValueError:
        raise BadRequest("public_key: expected 32 raw Ed25519 bytes in base64") from None
    if len(public_key) != 32:
        raise BadRequest("public_key: expected 32 raw Ed25519 bytes in base64")
    control = _control(request)
    agent_id, key_id = await run(control.register_agent, p["registration_key"], public_key, p["fingerprint"])
    tenant = await run(_registration_tenant, control, p["registration_key"])
    return {"tenant_id": tenant, "agent_id": agent_id, "key_id": key_id}


def _registration_tenant(control: Any, rk_secret: str) -> str:
    with control.read() as view:
        return view.find_registration_key(rk_secret).tenant_id


# ---- service ------------------------------------------------------------------------------------------
async def health(request: web.Request, p: Params) -> Any:
    services = request.app[SERVICES]
    warnings: list[str] = []
    if services.settings.auth_disabled:
        warnings.append("authentication is DISABLED: every request is tenant 'default' with scope '*'")
    try:
        await run(services.store.query_rows, "SELECT 1")
        store_ok = "ok"
    except Exception:
        store_ok = "error"
    components = {"clickhouse": store_ok, "lancedb": "ok" if services.lance is not None else "absent",
                  "control_plane": "ok" if services.control is not None else "absent"}
    return {"status": "ok" if store_ok == "ok" else "degraded",
            "auth": "disabled" if services.settings.auth_disabled else "enabled",
            "warnings": warnings, "components": components}


async def metrics(request: web.Request, p: Params) -> Any:
    return METRICS.render()


async def openapi(request: web.Request, p: Params) -> Any:
    return oa.build_document(list(request.app[ROUTES].values()))


KEY_BODY = (Field("scopes", "scopes", required=True, choices=tuple(sorted(SCOPES))),
            Field("name", "string", min_length=0, max_length=128),
            Field("expires_at", "integer", minimum=1, maximum=9_000_000_000_000_000,
                  description="epoch microseconds"))
ROTATE_BODY = (Field("grace_seconds", "integer", minimum=0, maximum=30 * 86_400),)
REGISTER_BODY = (Field("registration_key", "string", required=True, max_length=128),
                 Field("public_key", "string", required=True, max_length=128, description="base64, 32 bytes"),
                 Field("fingerprint", "string", required=True, max_length=256))

ROUTE_TABLE: tuple[Route, ...] = (
    Route("health", "GET", "/health", health, None, "Liveness and warnings", tag="service", response=oa.HEALTH),
    Route("metrics", "GET", "/metrics", metrics, None, "Prometheus metrics", tag="service",
          content_type="text/plain"),
    Route("openapi", "GET", "/openapi.json", openapi, None, "This document", tag="service",
          response={"type": "object"}),
    Route("list_events", "GET", "/api/events", list_events, "events:read", "Events in a time range",
          query=EVENT_FILTERS, response=oa.page("events", oa.EVENT_SUMMARY)),
    Route("get_event", "GET", "/api/events/{event_id}", get_event, "events:read", "One event",
          path_params=(Field("event_id", "string", pattern=ID),), response=oa.EVENT),
    Route("list_sessions", "GET", "/api/sessions", list_sessions, "sessions:read", "Sessions active in a range",
          query=(FROM, TO, AGENT, LIMIT, CURSOR), response=oa.page("sessions", oa.SESSION)),
    Route("get_session", "GET", "/api/sessions/{session_id}", get_session, "sessions:read", "One session",
          path_params=(SESSION_ID,), response=oa.SESSION_DETAIL),
    Route("session_events", "GET", "/api/sessions/{session_id}/events", session_events, "sessions:read",
          "A session's events in chain order", path_params=(SESSION_ID,), query=(LIMIT, CURSOR),
          response=oa.page("events", oa.EVENT)),
    Route("verify_session", "GET", "/api/sessions/{session_id}/verify", verify_session, "audit:read",
          "Recompute a session's chain and check its signatures", path_params=(SESSION_ID,), response=oa.VERIFY),
    Route("recall", "GET", "/api/recall", recall, "recall:read", "Semantic search over the tenant's texts",
          query=(Field("q", "string", required=True, max_length=1000),
                 Field("k", "integer", minimum=1, maximum=min(MAX_K, 100), default=10),
                 Field("type", "string", choices=EVENT_TYPES)),
          response=oa.RECALL, may_be_unavailable=True),
    Route("checkpoints", "GET", "/api/checkpoints", checkpoints, "audit:read", "Signed checkpoints, newest first",
          query=(LIMIT, CURSOR), response=oa.page("checkpoints", oa.CHECKPOINT)),
    Route("stats", "GET", "/api/stats", stats, "events:read", "Counts, tokens, cost in a time range",
          query=(FROM, TO), response=oa.STATS),
    Route("analyst_view", "GET", "/api/views/{name}", analyst_view, "events:read",
          "An analyst view (tool usage, LLM cost, error rate, agent activity, sessions), newest first",
          path_params=(Field("name", "string", choices=tuple(sorted(ANALYST_VIEWS))),),
          query=(Field("limit", "integer", minimum=1, maximum=1000, default=100),),
          response=oa.obj(view={"type": "string"}, rows=oa.array({"type": "object"}))),
    Route("dlq", "GET", "/api/dlq", dead_letters, "audit:read", "Dead letters (default: last 7 days)",
          query=(FROM, TO, Field("reason", "string", pattern=r"^[a-z_]{1,64}$"),
                 Field("original", "boolean", default=False), LIMIT, CURSOR),
          response=oa.page("dead_letters", oa.DEAD_LETTER)),
    Route("lessons", "GET", "/api/lessons", lessons, "lessons:read", "Lessons (default: all time)",
          query=(FROM, TO, AGENT, Field("text", "string", max_length=200), LIMIT, CURSOR),
          response=oa.page("lessons", oa.LESSON)),
    Route("list_keys", "GET", "/api/keys", list_keys, "keys:admin", "The tenant's API keys", tag="keys",
          response=oa.obj(keys=oa.array(oa.API_KEY)), may_be_unavailable=True),
    Route("create_key", "POST", "/api/keys", create_key, "keys:admin", "Create an API key (secret shown once)",
          tag="keys", body=KEY_BODY, response=oa.API_KEY_SECRET, status=201, may_be_unavailable=True),
    Route("rotate_key", "POST", "/api/keys/{key_id}/rotate", rotate_key, "keys:admin",
          "Rotate a key; the old one stays valid for the grace period", tag="keys", path_params=(KEY_ID,),
          body=ROTATE_BODY, response=oa.API_KEY_SECRET, may_be_unavailable=True),
    Route("revoke_key", "DELETE", "/api/keys/{key_id}", revoke_key, "keys:admin", "Revoke a key", tag="keys",
          path_params=(KEY_ID,), response=oa.API_KEY, may_be_unavailable=True),
    Route("register_agent", "POST", "/api/agents/register", register_agent, None,
          "Redeem a single-use rk_ key for an agent public key", tag="agents", body=REGISTER_BODY,
          response=oa.REGISTERED, may_be_unavailable=True, limit_by_ip=True),
)

AUDIT_ROUTE = Route("audit_verify", "GET", "/api/audit/verify", audit_verify, "audit:read",
                    "Verify the tenant's chains, signatures and checkpoints (agenttrail.audit)", tag="audit",
                    query=(Field("session", "string", pattern=ID),), response=oa.AUDIT, may_be_unavailable=True)
