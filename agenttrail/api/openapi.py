"""The OpenAPI 3.0 document, generated from the route table (the same declarations that are enforced).

Response schemas live here as small builders; routes name them in their declaration.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agenttrail.api.routes import Route

VERSION = "1.0.0"


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "nullable": True}


STR: dict[str, Any] = {"type": "string"}
INT: dict[str, Any] = {"type": "integer"}
NUM: dict[str, Any] = {"type": "number"}
BOOL: dict[str, Any] = {"type": "boolean"}
ANY: dict[str, Any] = {}


def obj(required: bool = True, **props: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": props}
    if required and props:
        schema["required"] = sorted(props)
    return schema


def array(item: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": item}


def page(name: str, item: dict[str, Any]) -> dict[str, Any]:
    return obj(**{name: array(item), "next_cursor": nullable(STR)})


ERROR = obj(error=STR, message=STR)
EVENT = obj(
    event_id=STR, session_id=STR, chain_index=INT, agent_id=STR, seq=INT, ts=INT, time=STR, type=STR,
    payload=ANY, payload_sha256=STR, attributes={"type": "object", "additionalProperties": STR},
    key_id=STR, signature=STR, prev_hash=STR, entry_hash=STR, seq_gap=BOOL,
    model=nullable(STR), tool=nullable(STR),
)
EVENT_SUMMARY = obj(
    event_id=STR, session_id=STR, chain_index=INT, agent_id=STR, seq=INT, ts=INT, time=STR, type=STR,
    payload=ANY, attributes={"type": "object", "additionalProperties": STR}, model=nullable(STR),
    tool=nullable(STR),
)
_SESSION_BASE = dict(
    session_id=STR, agent_id=STR, started_at=STR, last_at=STR, started_ts=INT, last_ts=INT, events=INT,
    head_index=INT, head_hash=STR, llm_calls=INT, tool_calls=INT, errors=INT, ended=BOOL,
)
SESSION = obj(**_SESSION_BASE)
SESSION_DETAIL = obj(**_SESSION_BASE, prompt_tokens=INT, completion_tokens=INT, cost_usd=NUM, seq_gaps=INT)
VERIFY = obj(
    session_id=STR, ok=BOOL, chain_ok=BOOL, events=INT, checked=INT, starts_at_index=INT,
    from_genesis=BOOL, head_index=INT, head_hash=STR, failure=nullable({"type": "object"}),
    payload_mismatch=array(STR), truncated=BOOL,
    signatures=obj(checked=BOOL, valid=INT, invalid=array(STR), unknown_key=array(STR)),
)
HIT = obj(event_id=STR, session_id=STR, ts=INT, time=STR, type=STR, text=STR, score=NUM)
RECALL = obj(hits=array(HIT))
CHECKPOINT = obj(partition=INT, offset=INT, kafka_ts_ms=INT, note=STR, kind=nullable(STR),
                 tree_size=nullable(INT), root_hash=nullable(STR), time=nullable(INT))
STATS = obj(**{"from": INT, "to": INT}, events=INT, sessions=INT, agents=INT,
            by_type={"type": "object", "additionalProperties": INT}, llm_calls=INT, tool_calls=INT,
            errors=INT, prompt_tokens=INT, completion_tokens=INT, cost_usd=NUM)
DEAD_LETTER = {**obj(partition=INT, offset=INT, ts=INT, time=STR, reason=STR, detail=STR, tenant_topic=STR,
                     source_partition=INT, source_offset=INT, original_bytes=INT),
               }
DEAD_LETTER["properties"] = {**DEAD_LETTER["properties"], "original_b64": STR}
LESSON = obj(event_id=STR, session_id=STR, agent_id=STR, ts=INT, time=STR, text=nullable(STR),
             category=nullable(STR))
API_KEY = obj(key_id=STR, tenant_id=STR, prefix=STR, name=STR, scopes=array(STR), created_at=INT,
              expires_at=nullable(INT), rotated_from=nullable(STR), rotated_to=nullable(STR),
              valid_until=nullable(INT), revoked_at=nullable(INT), last_used_at=nullable(INT), status=STR)
API_KEY_SECRET = obj(key=API_KEY, secret=STR)
REGISTERED = obj(tenant_id=STR, agent_id=STR, key_id=STR)
HEALTH = obj(status=STR, auth=STR, warnings=array(STR), components={"type": "object"})
AUDIT = {"type": "object", "required": ["ok"], "properties": {"ok": BOOL}}

_ERROR_STATUSES = {"400": "bad input", "401": "missing or invalid API key", "403": "missing scope",
                   "404": "not found (or another tenant's)", "429": "rate limited"}


def _operation(route: Route) -> dict[str, Any]:
    op: dict[str, Any] = {"operationId": route.name, "summary": route.summary, "tags": [route.tag]}
    params = [
        {"name": f.name, "in": "path", "required": True, "schema": f.json_schema()} for f in route.path_params
    ] + [
        {"name": f.name, "in": "query", "required": f.required, "schema": f.json_schema(),
         **({"description": f.description} if f.description else {})}
        for f in route.query
    ]
    if params:
        op["parameters"] = params
    if route.body is not None:
        props = {f.name: f.json_schema() for f in route.body}
        schema = {"type": "object", "properties": props, "additionalProperties": False,
                  "required": [f.name for f in route.body if f.required]}
        if not schema["required"]:
            del schema["required"]
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": schema}}}
    if route.content_type == "application/json":
        ok = {"description": "OK", "content": {"application/json": {"schema": route.response}}}
    else:
        ok = {"description": "OK", "content": {route.content_type: {"schema": STR}}}
    responses: dict[str, Any] = {str(route.status): ok}
    wanted = dict(_ERROR_STATUSES)
    if route.scope is None:
        wanted.pop("403")
        if not route.body:
            wanted.pop("401")
    if route.body is not None:
        wanted["413"] = "body too large"
    if route.may_be_unavailable:
        wanted["503"] = "not available in this process"
    for status, text in wanted.items():
        error = {"schema": {"$ref": "#/components/schemas/Error"}}
        responses[status] = {"description": text, "content": {"application/json": error}}
    op["responses"] = responses
    if route.scope is not None:
        op["security"] = [{"bearer": []}]
        op["description"] = f"Requires the scope `{route.scope}` (or `*`)."
    return op


def build_document(routes: list[Route]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        path = re.sub(r"\{([a-z_]+)\}", r"{\1}", route.path)
        paths.setdefault(path, {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.0.3",
        "info": {"title": "agenttrail API", "version": VERSION,
                 "description": "The audit trail for AI-agent fleets: tenant-scoped reads of the trail."},
        "paths": paths,
        "components": {
            "schemas": {"Error": ERROR},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "An API key at_live_…"}},
        },
    }
