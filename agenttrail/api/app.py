"""The aiohttp application factory: ``create_app(settings, store=..., lance=..., control=...)``.

Every piece is injected, so tests run the API over a chDB store (and a LanceDB table) without
Kafka; `agenttrail serve` injects the live Registry and adds the sink consumers as cleanup
contexts. Middleware order: JSON errors (outermost), then authentication + rate limit + scope.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

from aiohttp import web

from agenttrail.api.auth import ControlPlane, Principal, RouteAccess, make_auth_middleware
from agenttrail.api.cursor import CursorCodec
from agenttrail.api.errors import error_middleware
from agenttrail.api.params import parse_body, parse_query
from agenttrail.api.ratelimit import RateLimiter
from agenttrail.api.repository import TenantRepository
from agenttrail.api.routes import AUDIT_ROUTE, ROUTE_TABLE, Route
from agenttrail.api.state import PRINCIPAL, REPO, ROUTES, SERVICES, Services
from agenttrail.config import Settings
from agenttrail.metrics import METRICS
from agenttrail.processors.embedder import Embedder
from agenttrail.sinks.clickhouse.store import ClickHouseStore
from agenttrail.sinks.lancedb import LanceStore

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
# Long query strings (a 1,000-character recall query in 4-byte UTF-8 is ~12 KB escaped) must reach
# the app, which answers them in JSON, instead of the parser's plain-text 400 at 8 KB.
RUNNER_OPTIONS: dict[str, Any] = {"max_line_size": 65_536, "max_field_size": 16_384}
CleanupCtx = Callable[[web.Application], AsyncIterator[None]]


def audit_verifier() -> Any:
    """`agenttrail.audit.verify_tenant_from_store` when the audit module provides it, else None."""
    try:
        from agenttrail import audit
    except ImportError:
        return None
    return getattr(audit, "verify_tenant_from_store", None)


def route_table(with_audit: bool) -> list[Route]:
    return [*ROUTE_TABLE, AUDIT_ROUTE] if with_audit else list(ROUTE_TABLE)


def _wrap(route: Route) -> Callable[[web.Request], Any]:
    async def endpoint(request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        params: dict[str, Any] = {}
        for field in route.path_params:
            try:
                params[field.name] = field.from_text(request.match_info[field.name])
            except Exception as exc:  # a malformed id is as absent as an unknown one
                from agenttrail.errors import NotFound

                raise NotFound(f"no such {field.name.removesuffix('_id')}") from exc
        params.update(parse_query(route.query, request.query))
        if route.body is not None:
            params.update(await parse_body(route.body, request))
        result = await route.handler(request, params)
        if route.content_type == "application/json":
            response = web.Response(status=route.status, content_type="application/json",
                                    body=json.dumps(result, separators=(",", ":"), default=str))
        else:
            response = web.Response(status=route.status, text=result, content_type=route.content_type)
        METRICS.inc("agenttrail_api_requests_total", help="API requests answered", route=route.name)
        METRICS.inc("agenttrail_api_request_seconds_total", time.perf_counter() - started,
                    help="time spent answering", route=route.name)
        return response

    endpoint.__name__ = route.name
    return endpoint


def create_app(
    settings: Settings,
    *,
    store: ClickHouseStore,
    lance: LanceStore | None = None,
    embedder: Embedder | None = None,
    control: ControlPlane | None = None,
    cursor_key: bytes | None = None,
    rate_per_s: float = 50.0,
    burst: int = 100,
    with_audit: bool | None = None,
    background: Iterable[CleanupCtx] = (),
) -> web.Application:
    services = Services(settings=settings, store=store, lance=lance, embedder=embedder, control=control,
                        limiter=RateLimiter(rate_per_s, burst))
    if cursor_key is not None:
        services.cursors = CursorCodec(cursor_key)
    verifier = audit_verifier() if with_audit is None or with_audit else None
    services.audit_verify = verifier
    services.registry_view = control
    routes = route_table(verifier is not None)
    by_name = {r.name: r for r in routes}

    def access(request: web.Request) -> RouteAccess | None:
        route = by_name.get(getattr(request.match_info.route, "name", None) or "")
        if route is None or request.match_info.http_exception is not None:
            return None
        return RouteAccess(route.scope, route.limit_by_ip)

    def key_lookup(tenant_id: str, key_id: str, ts: int, agent_id: str) -> bytes | None:
        status = control.agent_key(tenant_id, key_id, ts, agent_id)  # type: ignore[union-attr]
        return status.public_key if status.valid else None

    def on_principal(request: web.Request, principal: Principal) -> None:
        request[PRINCIPAL] = principal
        request[REPO] = TenantRepository(
            store, lance, principal.tenant_id, cursors=services.cursors, embedder=embedder,
            key_lookup=key_lookup if control is not None else None)

    auth = make_auth_middleware(access=access, control=lambda: services.control, limiter=services.limiter,
                                auth_disabled=settings.auth_disabled, on_principal=on_principal)
    app = web.Application(middlewares=[error_middleware, auth], client_max_size=MAX_BODY_BYTES)
    app[SERVICES] = services
    app[ROUTES] = by_name
    for route in routes:
        app.router.add_route(route.method, route.path, _wrap(route), name=route.name)
    app.cleanup_ctx.extend(background)
    if settings.auth_disabled:
        logger.warning("AUTHENTICATION IS DISABLED (AGENTTRAIL_AUTH_DISABLED): every request is tenant "
                       "'default' with scope '*'. Never run like this outside local development.")
    return app
