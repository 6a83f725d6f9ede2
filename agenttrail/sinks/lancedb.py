"""LanceDB sink: embedding records in, tenant-isolated vector search out.

One table, ``events``: ``tenant_id, event_id, session_id, ts (int64 epoch micros), type, text, model,
vector (fixed_size_list<float32>[dim])``. Writes are `merge_insert` on ``(tenant_id, event_id)``:
replaying the embeddings topic leaves one row per event, and an event id reused by another tenant
can never overwrite this tenant's row.

`LanceStore.search` is the only way to query it: it takes a validated tenant id and always
prefilters on it, so a tenant never sees another tenant's rows however close they are. Filter
values are validated (tenant id, type names by regex, times as ints) before any filter text is
built from them.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import pyarrow as pa

from agenttrail.errors import AgentTrailError, ConfigError, TenantError
from agenttrail.kafka.topics import validate_tenant_id
from agenttrail.processors.embed import EmbeddingRecord
from agenttrail.processors.embedder import Embedder

logger = logging.getLogger(__name__)

TABLE = "events"
DEFAULT_DIM = 384
INDEX_MIN_ROWS = 50_000  # below this a flat (exact) scan is fast enough (~90 ms) and needs no training
OPTIMIZE_EVERY_ROWS = 20_000  # fold new rows into the index (they are flat-scanned until then)
MAX_K = 1000
_TYPE_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class InvalidQuery(AgentTrailError):
    """A recall query with a bad parameter (k, type, time range, empty text)."""

    code = "invalid_query"


@dataclass(frozen=True, slots=True)
class Hit:
    tenant_id: str
    event_id: str
    session_id: str
    ts: int
    type: str
    text: str
    score: float  # cosine similarity, 1.0 = same direction


def events_schema(dim: int = DEFAULT_DIM) -> pa.Schema:
    return pa.schema(
        [
            pa.field("tenant_id", pa.string(), nullable=False),
            pa.field("event_id", pa.string(), nullable=False),
            pa.field("session_id", pa.string(), nullable=False),
            pa.field("ts", pa.int64(), nullable=False),
            pa.field("type", pa.string(), nullable=False),
            pa.field("text", pa.string(), nullable=False),
            pa.field("model", pa.string(), nullable=False),
            pa.field("vector", pa.list_(pa.float32(), dim), nullable=False),
        ]
    )


def _check_type(value: str) -> str:
    if not isinstance(value, str) or not _TYPE_RE.fullmatch(value):
        raise InvalidQuery(f"invalid event type {value!r}")
    return value


def _check_int(name: str, value: object) -> int:
    if not isinstance(value, int | np.integer) or isinstance(value, bool):
        raise InvalidQuery(f"{name} must be an integer (epoch microseconds), got {value!r}")
    return int(value)


def _quote(value: str) -> str:
    """A SQL string literal for an identifier (quotes doubled; control characters refused)."""
    if not isinstance(value, str) or not value or any(ord(c) < 32 for c in value) or "\\" in value:
        raise InvalidQuery(f"unusable id in a filter: {value!r:.80}")
    return "'" + value.replace("'", "''") + "'"


def tenant_filter(
    tenant_id: str,
    types: Sequence[str] = (),
    ts_from: int | None = None,
    ts_to: int | None = None,
    exclude_types: Sequence[str] = (),
) -> str:
    """The SQL filter for one tenant; every value is validated, so nothing can be injected."""
    clauses = [f"tenant_id = '{validate_tenant_id(tenant_id)}'"]
    if types:
        clauses.append("type IN (" + ", ".join(f"'{_check_type(t)}'" for t in types) + ")")
    if exclude_types:
        clauses.append("type NOT IN (" + ", ".join(f"'{_check_type(t)}'" for t in exclude_types) + ")")
    if ts_from is not None:
        clauses.append(f"ts >= {_check_int('ts_from', ts_from)}")
    if ts_to is not None:
        clauses.append(f"ts < {_check_int('ts_to', ts_to)}")
    return " AND ".join(clauses)


def records_to_arrow(records: Sequence[EmbeddingRecord], dim: int) -> pa.Table:
    """Arrow rows for the table; the last record wins when one batch holds an event twice."""
    latest: dict[tuple[str, str], EmbeddingRecord] = {}
    for rec in records:
        validate_tenant_id(rec.tenant_id)
        if len(rec.vector) != dim:
            raise ConfigError(
                f"event {rec.event_id}: {len(rec.vector)}-d vector for a {dim}-d table "
                "(did the embedder change? use a new LanceDB uri or table)"
            )
        latest[(rec.tenant_id, rec.event_id)] = rec
    rows = list(latest.values())
    flat = np.asarray([r.vector for r in rows], dtype=np.float32).reshape(-1)
    return pa.table(
        {
            "tenant_id": [r.tenant_id for r in rows],
            "event_id": [r.event_id for r in rows],
            "session_id": [r.session_id for r in rows],
            "ts": pa.array([r.ts for r in rows], pa.int64()),
            "type": [r.type for r in rows],
            "text": [r.text for r in rows],
            "model": [r.model for r in rows],
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float32()), dim),
        },
        schema=events_schema(dim),
    )


class LanceStore:
    """The ``events`` vector table at `uri` (a local path or an object-store url)."""

    def __init__(
        self,
        uri: str,
        dim: int = DEFAULT_DIM,
        table: str = TABLE,
        index_min_rows: int = INDEX_MIN_ROWS,
        read_consistency_s: float | None = 1.0,
    ) -> None:
        import lancedb

        self.uri = uri
        self.dim = dim
        self.index_min_rows = index_min_rows
        # Readers in another process see new writes within read_consistency_s.
        interval = None if read_consistency_s is None else timedelta(seconds=read_consistency_s)
        self._db = lancedb.connect(uri, read_consistency_interval=interval)
        try:
            self._table = self._db.create_table(table, schema=events_schema(dim), exist_ok=True)
        except ValueError as exc:  # an existing table with another schema (another vector size)
            raise ConfigError(f"{uri}/{table} exists with a schema other than {dim}-d: {exc}") from None
        existing = self._table.schema.field("vector").type
        if existing != events_schema(dim).field("vector").type:
            raise ConfigError(f"{uri}/{table} holds {existing} vectors, expected {dim}-d float32")
        self._write_lock = threading.Lock()
        self._indexed = self.has_vector_index()
        self._unindexed_rows = 0

    # --- writing ---

    def upsert(self, records: Sequence[EmbeddingRecord]) -> int:
        """Insert new events, replace known ones (same tenant and event id); returns rows written."""
        if not records:
            return 0
        data = records_to_arrow(records, self.dim)
        with self._write_lock:
            result = (
                self._table.merge_insert(["tenant_id", "event_id"])
                .when_matched_update_all()
                .when_not_matched_insert_all()
                .execute(data)
            )
            self._unindexed_rows += int(getattr(result, "num_inserted_rows", data.num_rows))
            if not self._indexed and self.count() >= self.index_min_rows:
                self.build_index()
            elif self._indexed and self._unindexed_rows >= OPTIMIZE_EVERY_ROWS:
                self._optimize_locked()
        return data.num_rows

    def build_index(self) -> None:
        """A cosine IVF_SQ vector index plus scalar indexes for the filter columns.

        IVF_SQ, measured here at 100k random 384-d vectors: built in ~2 s, recall@10 0.97 with a
        tenant prefilter. IVF_PQ took ~90 s to build and gave recall@10 0.27 on the same data.
        """
        from lancedb.index import Bitmap, BTree, IvfSq

        logger.info("building the vector index on %s (%d rows)", self.uri, self.count())
        self._table.create_index("vector", config=IvfSq(distance_type="cosine"), replace=True)
        self._table.create_index("tenant_id", config=Bitmap(), replace=True)
        self._table.create_index("type", config=Bitmap(), replace=True)
        self._table.create_index("ts", config=BTree(), replace=True)
        self._indexed = True
        self._unindexed_rows = 0

    def optimize(self) -> None:
        """Compact files and fold rows written since the index was built into it."""
        with self._write_lock:
            self._optimize_locked()

    def _optimize_locked(self) -> None:
        self._table.optimize()
        self._unindexed_rows = 0

    def purge(self, tenant_id: str, before_ts_micros: int, keep_types: Sequence[str] = ("lesson",),
              session_ids: Sequence[str] | None = None) -> int:
        """Retention: delete a tenant's rows older than the cut, except `keep_types` (and, when
        given, only rows of `session_ids`: the whole sessions the checkpointer anchored)."""
        where = tenant_filter(tenant_id, ts_to=before_ts_micros, exclude_types=keep_types)
        ids = list(session_ids or ())
        chunks = [[]] if session_ids is None else [ids[i:i + 500] for i in range(0, len(ids), 500)]
        deleted = 0
        for chunk in chunks:
            clause = where if session_ids is None else f"{where} AND session_id IN ({', '.join(map(_quote, chunk))})"
            with self._write_lock:
                result = self._table.delete(clause)
            deleted += int(getattr(result, "num_deleted_rows", 0))
        logger.info("purged %d rows of tenant %s before %d", deleted, tenant_id, before_ts_micros)
        return deleted

    # --- reading ---

    def count(self, tenant_id: str | None = None) -> int:
        return self._table.count_rows(tenant_filter(tenant_id) if tenant_id is not None else None)

    def search(
        self,
        tenant_id: str,
        vector: Sequence[float] | np.ndarray,
        k: int = 10,
        type: str | Sequence[str] | None = None,
        ts_from: int | None = None,
        ts_to: int | None = None,
    ) -> list[Hit]:
        """The `k` rows of `tenant_id` closest to `vector` (cosine), best first. The only search."""
        k = _check_int("k", k)
        if not 1 <= k <= MAX_K:
            raise InvalidQuery(f"k must be between 1 and {MAX_K}, got {k}")
        query = np.asarray(vector, dtype=np.float32)
        if query.shape != (self.dim,) or not np.isfinite(query).all():
            raise InvalidQuery(f"query vector must be {self.dim} finite floats, got shape {query.shape}")
        types = (type,) if isinstance(type, str) else tuple(type or ())
        where = tenant_filter(tenant_id, types=types, ts_from=ts_from, ts_to=ts_to)
        rows = (
            self._table.search(query, vector_column_name="vector")
            .distance_type("cosine")
            .where(where, prefilter=True)
            .select(["tenant_id", "event_id", "session_id", "ts", "type", "text", "_distance"])
            .limit(k)
            .to_arrow()
            .to_pylist()
        )
        hits = [
            Hit(r["tenant_id"], r["event_id"], r["session_id"], r["ts"], r["type"], r["text"],
                1.0 - float(r["_distance"]))
            for r in rows
        ]
        # Belt and braces: the prefilter already guarantees this; never hand out another tenant's row.
        if any(h.tenant_id != tenant_id for h in hits):
            raise TenantError("LanceDB returned a row of another tenant despite the prefilter")
        return hits

    def has_vector_index(self) -> bool:
        return any("vector" in idx.columns for idx in self._table.list_indices())


def recall(
    store: LanceStore,
    embedder: Embedder,
    tenant_id: str,
    query_text: str,
    k: int = 10,
    type: str | Sequence[str] | None = None,
    ts_from: int | None = None,
    ts_to: int | None = None,
) -> list[Hit]:
    """Semantic recall for one tenant: embed `query_text`, search that tenant's rows only."""
    validate_tenant_id(tenant_id)
    text = query_text.strip() if isinstance(query_text, str) else ""
    if not text:
        raise InvalidQuery("the recall query text is empty")
    vector = embedder.embed([text])[0]
    return store.search(tenant_id, vector, k=k, type=type, ts_from=ts_from, ts_to=ts_to)
