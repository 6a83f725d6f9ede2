"""Chain-state snapshots: so a worker taking over a partition does not re-read its whole ledger.

The chain stage's state for one events partition (every session's next index, head and the last
chained seq per agent) is a fold over the ledger partition of the same number. Folding the whole
ledger on every assignment costs O(history). Instead the worker, right after committing a batch,
records the state together with the ledger end offset it covers (`ledger_offset`: the fold of
ledger records [0, ledger_offset)). A later owner restores the newest snapshot and folds only the
ledger records from `ledger_offset` on.

Snapshots live in a compacted topic, one manifest key per events partition and one key per chunk
(a large table is split so that no message nears Kafka's size limit). A snapshot's manifest and
chunks are written in one transaction, so a read_committed reader sees either all of them or
none; the newest manifest names its snapshot id and chunk count, and every chunk must carry that
id. Anything inconsistent means "no snapshot": the caller folds the whole ledger, which is always
correct, only slower. A snapshot is a cache, never a source of truth: the restored state is also
checked against the first ledger record folded after it (see `SessionTable.absorb_checked`).

The format is shared: what a row holds is a `RowFormat` (the chain worker's `CHAIN_ROWS` by
default; the checkpointer's heads in `processors.checkpointer_state`). Its name is written in the
manifest, so one kind of snapshot can never be restored as another (a manifest without it, written
before there were several kinds, is a chain snapshot).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

SNAPSHOT_VERSION = 1
CHUNK_SESSIONS = 4000  # sessions per chunk at most
CHUNK_BYTES = 512 * 1024  # and about this much JSON: well under the clients' 1 MB message limit

# (tenant_id, session_id, next index, head, {agent_id: last chained seq})
SessionRow = tuple[str, str, int, bytes, dict[str, int]]


@dataclass(frozen=True, slots=True)
class RowFormat:
    """How one kind of snapshot writes its rows: a JSON list per row and back (``parse`` raises
    ValueError/TypeError/KeyError/AttributeError on a bad row), and a worst-case JSON size."""

    name: str
    dump: Callable[[Any], list[object]]
    parse: Callable[[Any], Any]
    size: Callable[[Any], int]


def _chain_dump(row: SessionRow) -> list[object]:
    tenant, session, index, head, seqs = row
    return [tenant, session, index, head.hex(), seqs]


def _chain_parse(raw: Any) -> SessionRow:
    t, s, i, h, seqs = raw
    return str(t), str(s), int(i), bytes.fromhex(h), {str(a): int(q) for a, q in seqs.items()}


def _chain_size(row: SessionRow) -> int:
    # worst case JSON: every character escaped as \uXXXX (6 bytes)
    tenant, session, _, _, seqs = row
    return 100 + 6 * (len(tenant) + len(session)) + sum(6 * len(a) + 24 for a in seqs)


CHAIN_ROWS = RowFormat("chain", _chain_dump, _chain_parse, _chain_size)


@dataclass(frozen=True, slots=True)
class Snapshot:
    topic: str  # the topic whose partition's state this is (chain: events topic; checkpointer: ledger topic)
    partition: int
    ledger_offset: int  # the state is the fold of ledger records [0, ledger_offset)
    snapshot_id: str
    created_at: int  # epoch micros
    sessions: tuple[Any, ...]  # rows of the snapshot's RowFormat (chain: SessionRow)


def manifest_key(topic: str, partition: int) -> bytes:
    return f"{topic}:{partition}".encode()


def chunk_key(topic: str, partition: int, chunk: int) -> bytes:
    return f"{topic}:{partition}:{chunk}".encode()


def encode_snapshot(snapshot: Snapshot, rows: RowFormat = CHAIN_ROWS) -> list[tuple[bytes, bytes]]:
    """(key, value) messages: the chunks first, the manifest last (all in one transaction)."""
    chunks = _chunks(snapshot.sessions, rows.size) or [()]
    out: list[tuple[bytes, bytes]] = []
    for n, chunk in enumerate(chunks):
        body = {"v": SNAPSHOT_VERSION, "snapshot": snapshot.snapshot_id, "chunk": n,
                "sessions": [rows.dump(row) for row in chunk]}
        out.append((chunk_key(snapshot.topic, snapshot.partition, n), _dumps(body)))
    manifest = {"v": SNAPSHOT_VERSION, "rows": rows.name, "snapshot": snapshot.snapshot_id, "topic": snapshot.topic,
                "partition": snapshot.partition, "ledger_offset": snapshot.ledger_offset,
                "created_at": snapshot.created_at, "chunks": len(chunks), "sessions": len(snapshot.sessions)}
    out.append((manifest_key(snapshot.topic, snapshot.partition), _dumps(manifest)))
    return out


def _chunks(rows: tuple[Any, ...], size_of: Callable[[Any], int]) -> list[tuple[Any, ...]]:
    """Consecutive rows, cut at CHUNK_SESSIONS rows or about CHUNK_BYTES of JSON."""
    out: list[tuple[Any, ...]] = []
    start = size = 0
    for i, row in enumerate(rows):
        row_size = size_of(row)
        if i > start and (i - start >= CHUNK_SESSIONS or size + row_size > CHUNK_BYTES):
            out.append(rows[start:i])
            start, size = i, 0
        size += row_size
    if start < len(rows):
        out.append(rows[start:])
    return out


def latest_snapshots(messages: Iterable[tuple[bytes | None, bytes | None]],
                     rows: RowFormat = CHAIN_ROWS) -> dict[tuple[str, int], Snapshot]:
    """The newest complete snapshot per (topic, partition) among messages read in offset order.
    Incomplete or unreadable snapshots, and snapshots of another row format, are left out (the
    caller rebuilds from the ledger)."""
    latest: dict[bytes, bytes] = {}
    for key, value in messages:
        if key is None:
            continue
        if value is None:  # a tombstone deletes the key
            latest.pop(key, None)
        else:
            latest[key] = value
    out: dict[tuple[str, int], Snapshot] = {}
    for key, value in latest.items():
        if key.count(b":") != 1:  # a chunk ("topic:partition:n"); manifests are "topic:partition"
            continue
        snapshot = _assemble(value, latest, rows)
        if snapshot is not None:
            out[(snapshot.topic, snapshot.partition)] = snapshot
        elif _of_format(value, rows):
            logger.warning("snapshot %s is incomplete or unreadable: its ledger is folded instead",
                           key.decode(errors="replace"))
    return out


def _of_format(manifest_value: bytes, fmt: RowFormat) -> bool:
    try:
        return bool(json.loads(manifest_value).get("rows", CHAIN_ROWS.name) == fmt.name)
    except (ValueError, AttributeError):
        return True  # not even a manifest: worth a warning


def _assemble(manifest_value: bytes, latest: dict[bytes, bytes], fmt: RowFormat) -> Snapshot | None:
    try:
        manifest = json.loads(manifest_value)
        if manifest.get("v") != SNAPSHOT_VERSION or "ledger_offset" not in manifest:
            return None
        if manifest.get("rows", CHAIN_ROWS.name) != fmt.name:
            return None
        topic, partition, sid = str(manifest["topic"]), int(manifest["partition"]), str(manifest["snapshot"])
        rows: list[Any] = []
        for n in range(int(manifest["chunks"])):
            raw = latest.get(chunk_key(topic, partition, n))
            if raw is None:
                return None
            chunk = json.loads(raw)
            if chunk.get("snapshot") != sid or chunk.get("chunk") != n:
                return None
            rows.extend(fmt.parse(raw) for raw in chunk["sessions"])
        if len(rows) != int(manifest["sessions"]):
            return None
        offset = int(manifest["ledger_offset"])
        if offset < 0:
            return None
        return Snapshot(topic, partition, offset, sid, int(manifest["created_at"]), tuple(rows))
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


def _dumps(body: dict[str, object]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
