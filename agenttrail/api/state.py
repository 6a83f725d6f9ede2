"""Typed application and request state (aiohttp AppKey / RequestKey)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from agenttrail.api.auth import ControlPlane, Principal
from agenttrail.api.cursor import CursorCodec
from agenttrail.api.ratelimit import RateLimiter
from agenttrail.api.repository import TenantRepository
from agenttrail.config import Settings
from agenttrail.processors.embedder import Embedder
from agenttrail.sinks.clickhouse.store import ClickHouseStore
from agenttrail.sinks.lancedb import LanceStore


@dataclass(slots=True)
class Services:
    """What the API reads from: injected by `agenttrail serve` or by tests."""

    settings: Settings
    store: ClickHouseStore
    lance: LanceStore | None = None
    embedder: Embedder | None = None
    control: ControlPlane | None = None
    cursors: CursorCodec = field(default_factory=lambda: CursorCodec(secrets.token_bytes(32)))
    limiter: RateLimiter = field(default_factory=lambda: RateLimiter(rate=50.0, burst=100))
    audit_verify: Any = None  # agenttrail.audit.verify_tenant_from_store, when that module has it
    registry_view: Any = None


SERVICES = web.AppKey("services", Services)
ROUTES = web.AppKey("routes", dict)  # route name -> Route
PRINCIPAL = web.RequestKey("principal", Principal)
REPO = web.RequestKey("repo", TenantRepository)
