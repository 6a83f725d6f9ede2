"""Declared inputs: one `Field` type for query, path and body parameters.

A field validates raw input (a query string value or a JSON value) into a typed value, raising
`BadRequest` for anything else, and renders itself as the JSON Schema the OpenAPI document shows.
Both come from the same declaration, so the document cannot drift from what is enforced.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from agenttrail.api.errors import BadRequest

MAX_TS = 9_000_000_000_000_000  # epoch micros (year 2255): inside DateTime64(6)'s range
_INT_RE = re.compile(r"^-?[0-9]{1,19}$")
_TIME_PATTERN = (r"^([0-9]{1,19}|[0-9]{4}-[0-9]{2}-[0-9]{2}"
                 r"(T[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?(Z|[+-][0-9]{2}:[0-9]{2})?)?)$")
_TIME_RE = re.compile(_TIME_PATTERN)


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    kind: str  # "string" | "integer" | "boolean" | "time" | "scopes"
    required: bool = False
    description: str = ""
    minimum: int | None = None
    maximum: int | None = None
    min_length: int = 1
    max_length: int = 256
    pattern: str | None = None
    choices: tuple[str, ...] = ()
    default: Any = None

    def json_schema(self) -> dict[str, Any]:
        match self.kind:
            case "integer":
                schema: dict[str, Any] = {"type": "integer"}
                if self.minimum is not None:
                    schema["minimum"] = self.minimum
                if self.maximum is not None:
                    schema["maximum"] = self.maximum
            case "boolean":
                schema = {"type": "boolean"}
            case "time":
                schema = {"type": "string", "pattern": _TIME_PATTERN,
                          "description": "epoch microseconds, or an ISO 8601 date/time (UTC unless an offset is given)"}
            case "scopes":
                schema = {"type": "array", "items": {"type": "string", "enum": list(self.choices)},
                          "minItems": 1, "maxItems": len(self.choices), "uniqueItems": True}
            case _:
                schema = {"type": "string", "minLength": self.min_length, "maxLength": self.max_length}
                if self.choices:
                    schema = {"type": "string", "enum": list(self.choices)}
                elif self.pattern:
                    schema["pattern"] = self.pattern
        if self.description and "description" not in schema:
            schema["description"] = self.description
        if self.default is not None:
            schema["default"] = self.default
        return schema

    # ---- validation ---------------------------------------------------------------------------
    def _bad(self, why: str) -> BadRequest:
        return BadRequest(f"{self.name}: {why}")

    def from_text(self, raw: str) -> Any:
        """A query or path parameter (always text on the wire)."""
        match self.kind:
            case "integer":
                if not _INT_RE.fullmatch(raw):
                    raise self._bad("must be an integer")
                return self._int(int(raw))
            case "boolean":
                if raw not in ("true", "false"):
                    raise self._bad("must be true or false")
                return raw == "true"
            case "time":
                return parse_time(raw, self.name)
            case "scopes":
                return self.from_json(raw.split(","))
        return self._str(raw)

    def from_json(self, value: Any) -> Any:
        """A JSON body member (types are checked, never coerced)."""
        match self.kind:
            case "integer":
                if not isinstance(value, int) or isinstance(value, bool):
                    raise self._bad("must be an integer")
                return self._int(value)
            case "boolean":
                if not isinstance(value, bool):
                    raise self._bad("must be a boolean")
                return value
            case "time":
                if isinstance(value, int) and not isinstance(value, bool):
                    return parse_time(str(value), self.name)
                if not isinstance(value, str):
                    raise self._bad("must be epoch microseconds or an ISO 8601 string")
                return parse_time(value, self.name)
            case "scopes":
                if not isinstance(value, list) or not value or len(value) > len(self.choices):
                    raise self._bad(f"must be a non-empty list of scopes from {list(self.choices)}")
                if not all(isinstance(v, str) and v in self.choices for v in value) or len(set(value)) != len(value):
                    raise self._bad(f"must be distinct scopes from {list(self.choices)}")
                return tuple(value)
        if not isinstance(value, str):
            raise self._bad("must be a string")
        return self._str(value)

    def _int(self, value: int) -> int:
        if self.minimum is not None and value < self.minimum:
            raise self._bad(f"must be >= {self.minimum}")
        if self.maximum is not None and value > self.maximum:
            raise self._bad(f"must be <= {self.maximum}")
        return value

    def _str(self, value: str) -> str:
        if self.choices:
            if value not in self.choices:
                raise self._bad(f"must be one of {list(self.choices)}")
            return value
        if not self.min_length <= len(value) <= self.max_length:
            raise self._bad(f"must be {self.min_length}-{self.max_length} characters")
        if not value.isprintable():
            raise self._bad("must be printable text")
        if self.pattern and not re.fullmatch(self.pattern, value):
            raise self._bad(f"must match {self.pattern}")
        return value


def parse_time(raw: str, name: str = "time") -> int:
    """Epoch microseconds from digits or an ISO 8601 date/time; BadRequest otherwise."""
    if not _TIME_RE.fullmatch(raw):
        raise BadRequest(f"{name}: expected epoch microseconds or an ISO 8601 date/time")
    if raw.isdigit():
        value = int(raw)
    else:
        text = raw[:-1] + "+00:00" if raw.endswith("Z") else raw
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise BadRequest(f"{name}: not a valid date/time") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        try:
            value = int(parsed.timestamp() * 1_000_000)
        except (OverflowError, ValueError, OSError):
            raise BadRequest(f"{name}: out of range") from None
    if not 0 <= value <= MAX_TS:
        raise BadRequest(f"{name}: out of range (0..{MAX_TS} epoch microseconds)")
    return value


def parse_query(fields: tuple[Field, ...], query: Mapping[str, str]) -> dict[str, Any]:
    known = {f.name: f for f in fields}
    unknown = sorted(set(query) - set(known))
    if unknown:
        raise BadRequest(f"unknown query parameter(s): {', '.join(unknown)}")
    out: dict[str, Any] = {}
    for field in fields:
        values = query.getall(field.name, []) if hasattr(query, "getall") else (
            [query[field.name]] if field.name in query else [])
        if len(values) > 1:
            raise BadRequest(f"{field.name}: given more than once")
        if values:
            out[field.name] = field.from_text(values[0])
        elif field.required:
            raise BadRequest(f"{field.name}: required")
        else:
            out[field.name] = field.default
    return out


async def parse_body(fields: tuple[Field, ...], request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw:
        data: Any = {}
    else:
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise BadRequest("the request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise BadRequest("the request body must be a JSON object")
    known = {f.name for f in fields}
    unknown = sorted(set(data) - known)
    if unknown:
        raise BadRequest(f"unknown field(s): {', '.join(unknown)}")
    out: dict[str, Any] = {}
    for field in fields:
        if field.name in data and data[field.name] is not None:
            out[field.name] = field.from_json(data[field.name])
        elif field.required:
            raise BadRequest(f"{field.name}: required")
        else:
            out[field.name] = field.default
    return out
