"""The embed stage's pure core: which ledger records carry text, batching, dedupe, embedding records.

The Faust shell (owned by the worker) feeds ledger records in batches to `embed_batch` and produces
`encode_embedding(rec)` to ``agenttrail.embeddings`` keyed by the tenant id; the LanceDB sink
decodes them with `decode_embedding`.

Wire format of an embedding record (JSON, UTF-8, one object)::

    {"tenant_id": str, "event_id": str, "session_id": str, "ts": int (epoch micros, UTC),
     "type": str, "text": str, "model": str, "vector": [float, ...]}

``vector`` is a plain JSON list of float32 values, each written in its shortest round-trip form
(so decoding to float32 gives back the exact bits). Non-finite values are refused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from agenttrail.errors import InvalidEvent, TenantError
from agenttrail.kafka.topics import validate_tenant_id
from agenttrail.processors.embedder import Embedder

logger = logging.getLogger(__name__)

MAX_TEXT_CHARS = 4000  # the model reads 256 tokens (~1,000 chars); keep some more for display

# type -> payload keys holding its text, joined in this order when several are present
TEXT_FIELDS: Mapping[str, tuple[str, ...]] = {
    "message": ("text",),
    "llm_call": ("prompt", "completion"),
    "tool_result": ("output",),
    "error": ("message",),
    "lesson": ("text",),
    "policy_decision": ("reason",),
}
TEXT_TYPES = frozenset(TEXT_FIELDS)


class EnvelopeLike(Protocol):
    """The fields of `agenttrail.schemas.envelope.Envelope` this stage reads."""

    @property
    def event_id(self) -> str: ...
    @property
    def tenant_id(self) -> str: ...
    @property
    def session_id(self) -> str: ...
    @property
    def ts(self) -> int: ...
    @property
    def type(self) -> str: ...
    @property
    def payload(self) -> bytes: ...


class LedgerLike(Protocol):
    """`agenttrail.schemas.ledger.LedgerRecord` as this stage sees it."""

    @property
    def envelope(self) -> EnvelopeLike: ...


@dataclass(frozen=True, slots=True)
class TextItem:
    """One text-bearing event, before embedding."""

    tenant_id: str
    event_id: str
    session_id: str
    ts: int
    type: str
    text: str

    @property
    def text_sha256(self) -> bytes:
        return hashlib.sha256(self.text.encode("utf-8")).digest()


@dataclass(frozen=True, slots=True)
class EmbeddingRecord:
    tenant_id: str
    event_id: str
    session_id: str
    ts: int  # epoch microseconds, UTC
    type: str
    text: str
    vector: tuple[float, ...]  # float32 values, L2-normalised
    model: str = ""


# --- text extraction ---------------------------------------------------------------------------------


def _flatten(value: Any) -> str:
    """Text from a payload value: strings as is, chat-style lists by their content, else compact JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "\n".join(part for part in (_flatten(v) for v in value) if part)
    if isinstance(value, dict):
        for key in ("content", "text"):
            if key in value:
                return _flatten(value[key])
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def extract_text(event_type: str, payload: Mapping[str, Any]) -> str | None:
    """The text to embed for an event of `event_type`, or None when it carries none."""
    keys = TEXT_FIELDS.get(event_type)
    if keys is None:
        return None
    parts = [_flatten(payload.get(key)).strip() for key in keys]
    text = "\n".join(p for p in parts if p)
    if not text:
        return None
    return text[:MAX_TEXT_CHARS]


def text_item(
    tenant_id: str,
    event_id: str,
    session_id: str,
    ts: int,
    event_type: str,
    payload: bytes | Mapping[str, Any],
) -> TextItem | None:
    """A TextItem from the fields of one event, or None when it has no text worth embedding."""
    if event_type not in TEXT_TYPES:
        return None
    if isinstance(payload, bytes | bytearray):
        if not payload:  # erased by retention or crypto-shredding: nothing to embed
            return None
        try:
            payload = json.loads(payload)
        except (ValueError, UnicodeDecodeError):
            logger.warning("event %s: payload is not JSON, not embedded", event_id)
            return None
    if not isinstance(payload, Mapping):
        return None
    text = extract_text(event_type, payload)
    if text is None:
        return None
    return TextItem(tenant_id, event_id, session_id, ts, event_type, text)


def item_from_ledger(record: LedgerLike) -> TextItem | None:
    env = record.envelope
    return text_item(env.tenant_id, env.event_id, env.session_id, env.ts, env.type, env.payload)


# --- embedding a batch -------------------------------------------------------------------------------


def embed_items(items: Sequence[TextItem], embedder: Embedder) -> list[EmbeddingRecord]:
    """Embed each distinct text once (by SHA-256) and fan the vector out to every event that has it."""
    slot_of: dict[bytes, int] = {}
    unique: list[str] = []
    slots: list[int] = []
    for item in items:
        digest = item.text_sha256
        if digest not in slot_of:
            slot_of[digest] = len(unique)
            unique.append(item.text)
        slots.append(slot_of[digest])
    if not unique:
        return []
    matrix = np.asarray(embedder.embed(unique), dtype=np.float32)
    if matrix.ndim != 2 or matrix.shape[0] != len(unique):
        raise ValueError(f"embedder returned shape {matrix.shape} for {len(unique)} texts")
    vectors = [tuple(row) for row in matrix.tolist()]
    model = embedder.model_id
    return [
        EmbeddingRecord(i.tenant_id, i.event_id, i.session_id, i.ts, i.type, i.text, vectors[s], model)
        for i, s in zip(items, slots, strict=True)
    ]


def embed_batch(records: Iterable[LedgerLike], embedder: Embedder) -> list[EmbeddingRecord]:
    """Ledger records in, embedding records out (only for the text-bearing ones), in input order."""
    items = [item for item in map(item_from_ledger, records) if item is not None]
    return embed_items(items, embedder)


# --- batching ------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Batcher:
    """Collects items until `max_items` or until `max_wait_s` passed since the first one.

    Pure: the caller passes the clock (``now``, seconds), so tests need no sleeping.
    """

    max_items: int = 64
    max_wait_s: float = 1.0
    _items: list[Any] = field(default_factory=list)
    _first_at: float | None = None

    def add(self, item: Any, now: float) -> list[Any] | None:
        """Add one item; returns a full batch when this item completes one (or time is up)."""
        if self._first_at is None:
            self._first_at = now
        self._items.append(item)
        return self.take() if self.due(now) else None

    def due(self, now: float) -> bool:
        if not self._items:
            return False
        assert self._first_at is not None
        return len(self._items) >= self.max_items or now - self._first_at >= self.max_wait_s

    def take(self) -> list[Any]:
        """Everything pending (possibly nothing); the batcher is empty afterwards."""
        items, self._items, self._first_at = self._items, [], None
        return items

    def __len__(self) -> int:
        return len(self._items)


# --- wire format ---------------------------------------------------------------------------------------

_STR_FIELDS = ("tenant_id", "event_id", "session_id", "type", "text")


def _float32_json(vector: Sequence[float]) -> str:
    # str() of a numpy float32 is its shortest round-trip form ("0.1", "-3.4e-08"): valid JSON.
    return "[" + ",".join(map(str, np.asarray(vector, dtype=np.float32))) + "]"


def encode_embedding(record: EmbeddingRecord) -> bytes:
    if not all(math.isfinite(v) for v in record.vector):
        raise InvalidEvent("bad_field", f"event {record.event_id}: vector holds non-finite values")
    head = json.dumps(
        {
            "tenant_id": record.tenant_id,
            "event_id": record.event_id,
            "session_id": record.session_id,
            "ts": record.ts,
            "type": record.type,
            "text": record.text,
            "model": record.model,
        },
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return (head[:-1] + ',"vector":' + _float32_json(record.vector) + "}").encode("utf-8")


def decode_embedding(data: bytes) -> EmbeddingRecord:
    """Parse and validate one embedding record; anything off -> InvalidEvent("malformed")."""
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise InvalidEvent("malformed", "embedding record is not JSON") from None
    if not isinstance(obj, dict):
        raise InvalidEvent("malformed", "embedding record is not a JSON object")
    for name in _STR_FIELDS:
        if not isinstance(obj.get(name), str):
            raise InvalidEvent("malformed", f"embedding record: {name} must be a string")
    ts = obj.get("ts")
    if not isinstance(ts, int) or isinstance(ts, bool):
        raise InvalidEvent("malformed", "embedding record: ts must be an integer")
    model = obj.get("model", "")
    if not isinstance(model, str):
        raise InvalidEvent("malformed", "embedding record: model must be a string")
    vector = obj.get("vector")
    if (
        not isinstance(vector, list)
        or not vector
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in vector)
    ):
        raise InvalidEvent("malformed", "embedding record: vector must be a non-empty list of numbers")
    with np.errstate(over="ignore", invalid="ignore"):  # out-of-range -> inf, refused just below
        values = np.asarray(vector, dtype=np.float32)
    if not np.isfinite(values).all():
        raise InvalidEvent("malformed", "embedding record: vector holds non-finite values")
    try:
        tenant_id = validate_tenant_id(obj["tenant_id"])
    except TenantError:
        raise InvalidEvent("malformed", f"embedding record: bad tenant id {obj['tenant_id']!r}") from None
    return EmbeddingRecord(
        tenant_id=tenant_id,
        event_id=obj["event_id"],
        session_id=obj["session_id"],
        ts=ts,
        type=obj["type"],
        text=obj["text"],
        vector=tuple(values.tolist()),
        model=model,
    )

