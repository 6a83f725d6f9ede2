"""Authentication, rate limiting and scope checks, as one aiohttp middleware.

``Authorization: Bearer at_live_…`` is resolved to a principal by the control plane (its view
compares secret hashes in constant time and records the use, batched); the principal's tenant is
the only tenant a request can read, through the `TenantRepository` built here. With
``Settings.auth_disabled`` every request is tenant ``default`` with scope ``*`` (local development).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from aiohttp import web

from agenttrail.api.errors import Forbidden, Handler, RateLimited, Unauthorized
from agenttrail.api.ratelimit import RateLimiter
from agenttrail.api.scopes import grants
from agenttrail.control.view import AgentKeyStatus, ApiKeyInfo, ApiKeyPrincipal, RegistryView

logger = logging.getLogger(__name__)

DEV_TENANT = "default"


class ControlPlane(Protocol):
    """What the API needs of the control plane (`agenttrail.control.service.Registry` has it all)."""

    def authenticate(self, secret: str) -> ApiKeyPrincipal: ...

    def api_keys(self, tenant_id: str) -> list[ApiKeyInfo]: ...

    def create_api_key(self, tenant_id: str, scopes: list[str] | tuple[str, ...], *, name: str = "",
                       expires_at: int | None = None) -> tuple[ApiKeyInfo, str]: ...

    def rotate_api_key(self, key_id: str, *, grace_seconds: int | None = None,
                       tenant_id: str | None = None) -> tuple[ApiKeyInfo, str]: ...

    def revoke_api_key(self, key_id: str, *, tenant_id: str | None = None) -> ApiKeyInfo: ...

    def register_agent(self, rk_secret: str, public_key: bytes, fingerprint: str, *,
                       tenant_id: str | None = None) -> tuple[str, str]: ...

    def agent_key(self, tenant_id: str, key_id: str, at_ts_micros: int,
                  agent_id: str | None = None) -> AgentKeyStatus: ...

    def read(self) -> AbstractContextManager[RegistryView]: ...


@dataclass(frozen=True, slots=True)
class Principal:
    tenant_id: str
    key_id: str | None
    scopes: tuple[str, ...]


DEV_PRINCIPAL = Principal(DEV_TENANT, None, ("*",))


def bearer_secret(header: str | None) -> str:
    if not header:
        raise Unauthorized("missing API key")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise Unauthorized("expected Authorization: Bearer <api key>")
    return secret.strip()


def authenticate(control: ControlPlane | None, header: str | None) -> Principal:
    secret = bearer_secret(header)
    if control is None:
        raise Unauthorized("no control plane to check API keys against")
    found = control.authenticate(secret)  # CredentialRejected is an AuthError -> 401
    return Principal(found.tenant_id, found.key_id, tuple(found.scopes))


@dataclass(frozen=True, slots=True)
class RouteAccess:
    """What the middleware needs to know about a route: its scope (None: public) and rate key."""

    scope: str | None
    limit_by_ip: bool = False


def make_auth_middleware(
    *,
    access: Callable[[web.Request], RouteAccess | None],
    control: Callable[[], ControlPlane | None],
    limiter: RateLimiter,
    auth_disabled: bool,
    on_principal: Callable[[web.Request, Principal], None],
) -> Callable[[web.Request, Handler], object]:
    @web.middleware
    async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        route = access(request)
        if route is None:  # unknown path or method: the router's own 404/405
            return await handler(request)
        if route.scope is None:
            if route.limit_by_ip:
                _limit(limiter, f"ip:{request.remote}")
            return await handler(request)
        principal = DEV_PRINCIPAL if auth_disabled else authenticate(control(), request.headers.get("Authorization"))
        _limit(limiter, f"key:{principal.key_id or principal.tenant_id}")
        if not grants(principal.scopes, route.scope):
            raise Forbidden(f"this API key lacks the scope {route.scope!r}")
        on_principal(request, principal)
        return await handler(request)

    return auth_middleware


def _limit(limiter: RateLimiter, key: str) -> None:
    wait = limiter.acquire(key)
    if wait > 0:
        raise RateLimited(wait)
