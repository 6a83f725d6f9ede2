"""Every error the API returns is JSON ``{"error": code, "message": ...}``; this is the one mapping.

Domain errors (agenttrail.errors and the few API-only ones below) map to an HTTP status by class;
aiohttp's own HTTP errors (404 of an unknown path, 405, 413) are rewritten to the same JSON shape.
Anything unexpected is a 500 with a generic message (details only in the log).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from agenttrail.control.records import ControlError
from agenttrail.errors import AgentTrailError, AuthError, NotFound, TenantError, VerificationError
from agenttrail.metrics import METRICS

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class BadRequest(AgentTrailError):
    """Input the API refuses: bad JSON, wrong types, limits out of range, a forged cursor."""

    code = "bad_request"


class Forbidden(AuthError):
    """An authenticated key without the scope a route needs."""

    code = "forbidden"


class Unauthorized(AuthError):
    code = "unauthorized"


class RateLimited(AgentTrailError):
    code = "rate_limited"

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"too many requests; retry in {retry_after:.1f} s")
        self.retry_after = retry_after


class Unavailable(AgentTrailError):
    """A part of the service this process does not run (no vector store, no control plane)."""

    code = "unavailable"


def status_of(exc: AgentTrailError) -> tuple[int, str]:
    """(HTTP status, error code) for a domain error. Order matters: subclasses first."""
    from agenttrail.sinks.lancedb import InvalidQuery

    match exc:
        case RateLimited():
            return 429, exc.code
        case Forbidden():
            return 403, exc.code
        case AuthError():  # Unauthorized, CredentialRejected: never say which part was wrong
            return 401, "unauthorized"
        case NotFound():
            return 404, "not_found"
        case BadRequest() | InvalidQuery() | ControlError() | TenantError():
            return 400, "bad_request"
        case VerificationError():
            return 422, exc.code
        case Unavailable():
            return 503, exc.code
    return 500, "internal"


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    body = json.dumps({"error": code, "message": message})
    return web.Response(status=status, body=body, content_type="application/json", headers=headers)


_HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 413: "payload_too_large", 415: "unsupported_media_type"}


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except AgentTrailError as exc:
        status, code = status_of(exc)
        headers = {}
        if isinstance(exc, RateLimited):
            headers["Retry-After"] = str(max(1, int(exc.retry_after + 0.999)))
        if status == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="agenttrail"'
        if status >= 500:
            logger.error("%s %s failed: %s", request.method, request.path, exc)
            message = "the service failed to answer; see the server log"
            if status == 503:
                message = str(exc)
        else:
            # Never echo an id back: a 404 reads the same for a missing id and another tenant's.
            message = {401: "missing or invalid API key", 404: "not found"}.get(status, str(exc))
        METRICS.inc("agenttrail_api_errors_total", help="API error responses", status=str(status))
        return error_response(status, code, message, headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "http_error")
        METRICS.inc("agenttrail_api_errors_total", help="API error responses", status=str(exc.status))
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return error_response(exc.status, code, exc.reason or code, headers)
    except Exception:
        logger.exception("%s %s: unhandled error", request.method, request.path)
        METRICS.inc("agenttrail_api_errors_total", help="API error responses", status="500")
        return error_response(500, "internal", "the service failed to answer; see the server log")
