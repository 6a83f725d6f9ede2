"""What the checkpointer knows of its own notes, and its snapshots: so a start does not re-read them all.

`agenttrail.checkpoints` is kept forever and the checkpointer is its only writer: per tenant, a
signed checkpoint every interval, retention anchors and purge commands. To go on, a start needs per
tenant only the hash of the newest checkpoint and of the newest anchor (each chain's `prev`), and
the sessions already anchored and purged. That is a fold of the topic (`absorb_note`), and like
the heads it is snapshotted to the compacted `agenttrail.checkpointer-state` topic.

One notes snapshot per checkpoints partition, `Snapshot(CHECKPOINTS_TOPIC, p, end_p, ...)`, all with
one snapshot id and written in one transaction: together they are the fold of every partition p's
records [0, end_p). (The ends are taken from the producer's delivery reports, written only once
the producer has flushed everything, so nothing the state reflects lies beyond them.) The tenant
rows (`NOTE_ROWS`: ``[tenant, prev checkpoint hex | null, prev anchor hex | null, [anchored]]``,
a large anchored set cut over several rows) are spread over the partitions' snapshots only to
keep each small: the state is the union of all of them, so it is used only whole (`restore_notes`).
A start restores it and reads each partition from its end on; when the snapshots are missing,
incomplete, of another partition count or beyond a partition's end (a recreated topic), it reads
the whole topic instead, which is always right.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from confluent_kafka import Consumer, TopicPartition

from agenttrail.errors import BrokerError
from agenttrail.kafka.clients import consumer_config
from agenttrail.kafka.partition_reader import iter_partitions
from agenttrail.kafka.topics import CHECKPOINTER_STATE_TOPIC, CHECKPOINTS_TOPIC
from agenttrail.processors.checkpoint import parse_note
from agenttrail.processors.checkpointer_state import usable
from agenttrail.processors.retention import PurgeCommand
from agenttrail.processors.snapshot import RowFormat, Snapshot
from agenttrail.processors.snapshot_io import load_snapshots

logger = logging.getLogger(__name__)

KIND_HEADER = "kind"
NONE_FOUND = "none found"
ANCHORED_PER_ROW = 2000  # anchored sessions per row at most (a row must fit one snapshot chunk)
NoteRow = tuple[str, bytes | None, bytes | None, tuple[str, ...]]  # (tenant, prev checkpoint, prev anchor, anchored)


class Notes(Protocol):
    """A tenant's notes state (the checkpointer's `TenantHeads`)."""

    prev_checkpoint: bytes | None
    prev_anchor: bytes | None
    anchored: set[str]


def _hex(value: bytes | None) -> str | None:
    return None if value is None else value.hex()


def _unhex(value: Any) -> bytes | None:
    if value is None:
        return None
    raw = bytes.fromhex(value)
    if len(raw) != 32:
        raise ValueError(f"bad note hash {value!r:.80}")
    return raw


def _dump(row: NoteRow) -> list[object]:
    tenant, checkpoint, anchor, anchored = row
    return [tenant, _hex(checkpoint), _hex(anchor), list(anchored)]


def _parse(raw: Any) -> NoteRow:
    tenant, checkpoint, anchor, anchored = raw
    if not isinstance(tenant, str) or not tenant or not isinstance(anchored, list):
        raise ValueError(f"bad notes row {raw!r:.80}")
    return tenant, _unhex(checkpoint), _unhex(anchor), tuple(str(s) for s in anchored)


def _size(row: NoteRow) -> int:
    # worst case JSON: every character escaped (6 bytes), two 64-hex hashes
    return 200 + 6 * len(row[0]) + sum(6 * len(s) + 3 for s in row[3])


NOTE_ROWS = RowFormat("notes", _dump, _parse, _size)


@dataclass(frozen=True, slots=True)
class NotesLoad:
    """What a start read of the checkpoints topic."""

    ends: dict[int, int]  # partition -> the next offset (everything before it is in the state)
    read: int  # notes read from the topic
    restored: bool  # the state came from snapshots (and only the notes after them were read)


@dataclass(slots=True)
class _Fresh:
    prev_checkpoint: bytes | None = None
    prev_anchor: bytes | None = None
    anchored: set[str] = field(default_factory=set)


def absorb_note(tenant_of: Callable[[str], Notes], value: bytes, headers: Mapping[str, bytes]) -> None:
    """Fold one record of the checkpoints topic (in offset order per partition)."""
    kind = headers.get(KIND_HEADER, b"").decode()
    if kind == "purge":
        try:
            cmd = PurgeCommand.from_json(value)
        except (ValueError, TypeError, KeyError, AttributeError):  # InvalidCommand is a ValueError
            # Skipped, not fatal: at worst those sessions are anchored and purged again (idempotent).
            logger.warning("skipping unreadable purge command on %s", CHECKPOINTS_TOPIC)
            return
        tenant_of(cmd.tenant_id).anchored.update(cmd.session_ids or ())
        return
    try:
        note = parse_note(value)
    except Exception:
        logger.warning("skipping unreadable note on %s", CHECKPOINTS_TOPIC)
        return
    state = tenant_of(note.tenant)
    if note.kind == "anchor":
        state.prev_anchor = note.hash
    else:
        state.prev_checkpoint = note.hash


def note_rows(tenants: Mapping[str, Notes]) -> list[NoteRow]:
    """Every tenant's notes state as rows, in a stable order (tenants without any left out)."""
    rows: list[NoteRow] = []
    for tenant, state in sorted(tenants.items()):
        anchored = sorted(state.anchored)
        if state.prev_checkpoint is None and state.prev_anchor is None and not anchored:
            continue
        for start in range(0, max(len(anchored), 1), ANCHORED_PER_ROW):
            rows.append((tenant, state.prev_checkpoint, state.prev_anchor,
                         tuple(anchored[start:start + ANCHORED_PER_ROW])))
    return rows


def notes_snapshots(rows: list[NoteRow], ends: Mapping[int, int], snapshot_id: str,
                    now_micros: int) -> list[Snapshot]:
    """One snapshot per checkpoints partition (0 .. the highest in ``ends``), one snapshot id."""
    count = max(ends, default=-1) + 1
    spread: dict[int, list[NoteRow]] = {p: [] for p in range(count)}
    for row in rows:
        spread[zlib.crc32(row[0].encode()) % count].append(row)
    return [Snapshot(CHECKPOINTS_TOPIC, p, ends.get(p, 0), snapshot_id, now_micros, tuple(spread[p]))
            for p in range(count)]


class NotesRefused(ValueError):
    """The notes snapshots cannot stand for the topic: it is read whole."""


def restore_notes(found: Mapping[int, Snapshot], bounds: Mapping[int, tuple[int, int]]
                  ) -> tuple[dict[str, _Fresh], dict[int, int]]:
    """The tenants' notes state and each partition's end from the snapshots ``found`` of a topic
    whose partitions hold offsets ``bounds`` ([low, high) per partition). NotesRefused unless there
    is one snapshot per partition, all of one snapshot id, each end within its partition."""
    if not found:
        raise NotesRefused(NONE_FOUND)
    if set(found) != set(bounds):
        raise NotesRefused(f"snapshots of partitions {sorted(found)}, the topic has {len(bounds)}")
    if len({s.snapshot_id for s in found.values()}) != 1:
        raise NotesRefused("the partitions' snapshots are of different snapshot ids")
    for p, snap in sorted(found.items()):
        if not usable(snap, *bounds[p]):
            raise NotesRefused(f"partition {p} at offset {snap.ledger_offset} is outside [{bounds[p][0]}, "
                               f"{bounds[p][1]}) (a recreated topic?)")
    tenants: dict[str, _Fresh] = {}
    for snap in found.values():
        for tenant, checkpoint, anchor, anchored in snap.sessions:
            state = tenants.setdefault(tenant, _Fresh(checkpoint, anchor))
            if (state.prev_checkpoint, state.prev_anchor) != (checkpoint, anchor):
                raise NotesRefused(f"the rows of tenant {tenant} disagree")
            state.anchored.update(anchored)
    return tenants, {p: s.ledger_offset for p, s in found.items()}


def load_notes(bootstrap: str, state_partitions: int, tenant_of: Callable[[str], Notes],
               partitions: int, *, timeout: float) -> NotesLoad:
    """Fold the checkpoints topic (``partitions`` of them) into ``tenant_of``: from the notes
    snapshots and the records after them when they can be used (``state_partitions`` > 0), else
    from the beginning."""
    parts = [(CHECKPOINTS_TOPIC, p) for p in range(partitions)]
    starts: dict[int, int] = {}
    if state_partitions > 0 and partitions > 0:
        try:
            tenants, starts = restore_notes(*_snapshots_and_bounds(bootstrap, state_partitions, partitions, timeout))
        except NotesRefused as exc:
            level = logging.INFO if str(exc) == NONE_FOUND else logging.WARNING  # none yet: a first start
            logger.log(level, "checkpointer notes snapshots not used (%s): reading all of %s", exc, CHECKPOINTS_TOPIC)
        else:
            for tenant, fresh in tenants.items():
                state = tenant_of(tenant)
                state.prev_checkpoint, state.prev_anchor = fresh.prev_checkpoint, fresh.prev_anchor
                state.anchored.update(fresh.anchored)
    ends = {p: starts.get(p, 0) for p in range(partitions)}
    read = 0
    for msg in iter_partitions(bootstrap, parts, {(CHECKPOINTS_TOPIC, p): o for p, o in starts.items()},
                               group="agenttrail-checkpointer-load", timeout=timeout):
        absorb_note(tenant_of, msg.value(), dict(msg.headers() or []))
        ends[msg.partition()] = max(ends.get(msg.partition(), 0), msg.offset() + 1)
        read += 1
    return NotesLoad(ends, read, bool(starts))


def _snapshots_and_bounds(bootstrap: str, state_partitions: int, partitions: int, timeout: float
                          ) -> tuple[dict[int, Snapshot], dict[int, tuple[int, int]]]:
    sources = [(CHECKPOINTS_TOPIC, p) for p in range(partitions)]
    try:
        found = load_snapshots(bootstrap, sources, state_partitions, topic=CHECKPOINTER_STATE_TOPIC,
                               rows=NOTE_ROWS, group="agenttrail-checkpointer-state", timeout=timeout)
    except BrokerError as exc:
        raise NotesRefused(f"unreadable: {exc}") from None
    if not found:
        raise NotesRefused(NONE_FOUND)
    consumer = Consumer(consumer_config(bootstrap, "agenttrail-checkpointer-state"))
    try:
        bounds = {p: consumer.get_watermark_offsets(TopicPartition(CHECKPOINTS_TOPIC, p), timeout=30, cached=False)
                  for p in range(partitions)}
    finally:
        consumer.close()
    return {p: s for (_, p), s in found.items()}, {p: (int(lo), int(hi)) for p, (lo, hi) in bounds.items()}
