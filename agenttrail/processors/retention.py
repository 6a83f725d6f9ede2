"""Retention: per-tenant policy, the cut, topic `retention.ms`, and purge commands for the sinks.

An event expires when `ts < now - days` (an event exactly at the cut is kept) unless its type is
kept forever (`lesson`). The same rule drives late events to the DLQ (`expired`) in verify, the
sinks' purge (`PurgeCommand.before_ts_micros` is the cut, strict `<`) and ClickHouse TTLs.

Topic retention (Kafka deletes whole segments by record time, with no notion of event type):
- `agenttrail.<t>.events`  policy retention: raw input, re-verifiable while it lasts.
- `agenttrail.<t>.ledger`  policy retention too: it carries payloads, so keeping it forever would
  break the retention promise. Lessons outlive it in ClickHouse and LanceDB, whose purges skip
  `keep_types`; a replay that rebuilds projections from the ledger must keep older lessons.
- `agenttrail.embeddings`  policy retention (vectors are derived from the texts).
- `agenttrail.checkpoints` infinite (-1): small, signed, and needed after a purge, because the
  retention anchors written there are where verification starts again.
- `agenttrail.dlq`         the service-wide default policy (the topic is shared by tenants).

Whole sessions are purged, never a prefix: the retention timer calls `plan_purge(...)` per tenant,
which picks the sessions whose newest event is older than the cut, signs an anchor of their final
heads (publish it to `agenttrail.checkpoints` first) and returns the purge command naming them.
Every chain that remains is then complete from genesis; a purged session is proven by its anchor
head, and its surviving `lesson` rows still verify one by one (signature and entry hash). If a
purged session later receives events, its chain continues from the anchored head:
`chain.verify_chain(entries, anchor=anchor.heads_map()[sid])`.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from agenttrail.config import Settings
from agenttrail.errors import AgentTrailError
from agenttrail.kafka.topics import TENANT_ID_RE
from agenttrail.processors.checkpoint import RetentionAnchor, build_anchor
from agenttrail.processors.service_key import ServiceKey

DAY_MICROS = 86_400 * 1_000_000
DAY_MS = 86_400 * 1_000
INFINITE_MS = -1
KEEP_FOREVER = frozenset({"lesson"})
PURGE_KIND = "purge"

EVENTS, LEDGER, EMBEDDINGS, CHECKPOINTS, DLQ = "events", "ledger", "embeddings", "checkpoints", "dlq"


class InvalidCommand(AgentTrailError, ValueError):
    """A purge command that cannot be read or does not make sense."""

    code = "invalid_command"


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    days: int = 90
    keep_forever_types: frozenset[str] = field(default=KEEP_FOREVER)

    def __post_init__(self) -> None:
        if type(self.days) is not int or self.days < 1:
            raise ValueError(f"retention days must be an integer >= 1, got {self.days!r}")

    @classmethod
    def from_settings(cls, settings: Settings) -> RetentionPolicy:
        return cls(days=settings.retention_days)


def cut_time(now_micros: int, policy: RetentionPolicy) -> int:
    """Events with `ts` strictly before this instant (epoch micros) have expired."""
    return now_micros - policy.days * DAY_MICROS


def is_expired(policy: RetentionPolicy, event_ts_micros: int, now_micros: int, event_type: str) -> bool:
    return event_type not in policy.keep_forever_types and event_ts_micros < cut_time(now_micros, policy)


def retention_ms(policy: RetentionPolicy) -> int:
    """`retention.ms` of a tenant's raw events topic."""
    return policy.days * DAY_MS


def topic_retention_ms(policy: RetentionPolicy, kind: str) -> int:
    """`retention.ms` for a topic kind (EVENTS, LEDGER, EMBEDDINGS, CHECKPOINTS, DLQ); see above."""
    if kind == CHECKPOINTS:
        return INFINITE_MS
    if kind in (EVENTS, LEDGER, EMBEDDINGS, DLQ):
        return retention_ms(policy)
    raise ValueError(f"unknown topic kind {kind!r}")


@dataclass(frozen=True, slots=True)
class PurgeCommand:
    """Delete a tenant's events with `ts < before_ts_micros` whose type is not in `keep_types`.

    `session_ids`: None purges by time across the tenant; a tuple limits the purge to those
    (whole, expired) sessions, which is what `plan_purge` emits so no chain loses only a prefix.
    """

    tenant_id: str
    before_ts_micros: int
    keep_types: tuple[str, ...] = ("lesson",)
    session_ids: tuple[str, ...] | None = None
    anchor_hash: bytes | None = None  # RetentionAnchor.hash of the anchor signed for this cut

    def __post_init__(self) -> None:
        if not isinstance(self.tenant_id, str) or not TENANT_ID_RE.fullmatch(self.tenant_id):
            raise InvalidCommand(f"purge command has an invalid tenant id {self.tenant_id!r:.80}")
        if type(self.before_ts_micros) is not int:
            raise InvalidCommand("purge command before_ts_micros must be an integer")
        if not _str_tuple(self.keep_types):
            raise InvalidCommand("purge command keep_types must be a tuple of type names")
        if self.session_ids is not None and not _str_tuple(self.session_ids):
            raise InvalidCommand("purge command session_ids must be None or a tuple of session ids")
        anchor = self.anchor_hash
        if anchor is not None and (not isinstance(anchor, bytes) or len(anchor) != 32):
            raise InvalidCommand("purge command anchor_hash must be 32 bytes")

    @property
    def before_ts(self) -> int:
        """Alias read by `sinks.clickhouse.purge.purge_tenant`."""
        return self.before_ts_micros

    def to_json(self) -> bytes:
        anchor = base64.b64encode(self.anchor_hash).decode() if self.anchor_hash is not None else None
        sessions = list(self.session_ids) if self.session_ids is not None else None
        return json.dumps(
            {
                "kind": PURGE_KIND,
                "tenant_id": self.tenant_id,
                "before_ts_micros": self.before_ts_micros,
                "keep_types": sorted(self.keep_types),
                "session_ids": sessions,
                "anchor_hash": anchor,
            },
            separators=(",", ":"),
            sort_keys=True,
            ensure_ascii=False,
        ).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> PurgeCommand:
        try:
            obj = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            raise InvalidCommand("purge command is not UTF-8 JSON") from None
        if not isinstance(obj, dict) or set(obj) != _COMMAND_KEYS or obj["kind"] != PURGE_KIND:
            raise InvalidCommand(f"purge command must be an object with exactly {sorted(_COMMAND_KEYS)}")
        keep, sessions, anchor = obj["keep_types"], obj["session_ids"], obj["anchor_hash"]
        if not isinstance(keep, list) or not (sessions is None or isinstance(sessions, list)):
            raise InvalidCommand("purge command keep_types / session_ids must be lists")
        if anchor is not None:
            if not isinstance(anchor, str):
                raise InvalidCommand("purge command anchor_hash must be base64 text")
            try:
                anchor = base64.b64decode(anchor, validate=True)
            except (binascii.Error, ValueError):
                raise InvalidCommand("purge command anchor_hash is not base64") from None
        sessions = tuple(sessions) if sessions is not None else None
        return cls(obj["tenant_id"], obj["before_ts_micros"], tuple(keep), sessions, anchor)


_COMMAND_KEYS = frozenset(
    {"kind", "tenant_id", "before_ts_micros", "keep_types", "session_ids", "anchor_hash"}
)


def _str_tuple(value: object) -> bool:
    return isinstance(value, tuple) and all(isinstance(item, str) and item for item in value)


def expired_sessions(
    last_ts: Mapping[str, int], cut: int, already_purged: Collection[str] = frozenset()
) -> list[str]:
    """Sessions whose newest event is older than the cut (and not purged before), sorted."""
    return sorted(sid for sid, ts in last_ts.items() if ts < cut and sid not in already_purged)


def plan_purge(
    tenant_id: str,
    policy: RetentionPolicy,
    now_micros: int,
    heads: Mapping[str, tuple[int, bytes]],
    last_ts: Mapping[str, int],
    prev_anchor_hash: bytes | None,
    signer: ServiceKey,
    already_purged: Collection[str] = frozenset(),
) -> tuple[RetentionAnchor, PurgeCommand] | None:
    """Whole expired sessions: the signed anchor of their final heads and the purge that cites it.

    `heads`/`last_ts`: per session (chain length, head) and newest event ts. Returns None when no
    session expired. Publish the anchor before the command: sinks only purge what is anchored.
    """
    cut = cut_time(now_micros, policy)
    expired = [sid for sid in expired_sessions(last_ts, cut, already_purged) if sid in heads]
    if not expired:
        return None
    final_heads = {sid: heads[sid] for sid in expired}
    anchor = build_anchor(tenant_id, final_heads, cut, prev_anchor_hash, now_micros, signer)
    command = PurgeCommand(
        tenant_id, cut, tuple(sorted(policy.keep_forever_types)), tuple(expired), anchor.hash
    )
    return anchor, command
