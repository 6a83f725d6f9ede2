"""Opaque, signed pagination cursors.

A cursor is ``base64url(json(position)) + "." + base64url(HMAC-SHA256(key, tenant ‖ kind ‖ body))``.
The MAC binds it to the tenant it was minted for and to the listing it belongs to, so a forged or
edited cursor, a cursor of another listing, or a cursor minted for another tenant is refused
(`BadRequest`) before anything is read: nothing of the other tenant can leak through it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from agenttrail.api.errors import BadRequest

MAX_CURSOR_CHARS = 1024


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class CursorCodec:
    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("the cursor key needs at least 16 bytes")
        self._key = key

    def _mac(self, tenant_id: str, kind: str, body: bytes) -> bytes:
        message = tenant_id.encode() + b"\x00" + kind.encode() + b"\x00" + body
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def encode(self, tenant_id: str, kind: str, position: list[Any]) -> str:
        body = json.dumps(position, separators=(",", ":")).encode()
        return _b64(body) + "." + _b64(self._mac(tenant_id, kind, body))

    def decode(self, tenant_id: str, kind: str, cursor: str) -> list[Any]:
        """The position inside a cursor minted for this tenant and listing; BadRequest otherwise."""
        if not isinstance(cursor, str) or not 0 < len(cursor) <= MAX_CURSOR_CHARS or cursor.count(".") != 1:
            raise BadRequest("invalid cursor")
        body_text, mac_text = cursor.split(".")
        try:
            body, mac = _unb64(body_text), _unb64(mac_text)
        except (ValueError, UnicodeError):
            raise BadRequest("invalid cursor") from None
        if not hmac.compare_digest(mac, self._mac(tenant_id, kind, body)):
            raise BadRequest("invalid cursor")
        try:
            position = json.loads(body)
        except ValueError:
            raise BadRequest("invalid cursor") from None
        if not isinstance(position, list):
            raise BadRequest("invalid cursor")
        return position
