"""Benchmarks behind ``agenttrail bench embed``: embedding throughput, LanceDB writes, recall latency."""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from agenttrail.processors.embed import EmbeddingRecord, TextItem, embed_items
from agenttrail.processors.embedder import Embedder, MiniLMEmbedder
from agenttrail.sinks.lancedb import LanceStore

logger = logging.getLogger(__name__)

_SUBJECTS = ["the agent", "the deploy job", "Postgres", "the billing service", "a tool call", "the planner"]
_VERBS = ["timed out after", "succeeded within", "retried three times in", "was denied after", "logged"]
_OBJECTS = ["30s", "a cache miss", "the refund request", "an empty result set", "a rate limit", "2 tokens"]

Progress = Callable[[int], None]


def synthetic_texts(n: int, seed: int = 0) -> list[str]:
    """`n` distinct short agent-log-like sentences of varied length."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        words = [_SUBJECTS[rng.integers(len(_SUBJECTS))], _VERBS[rng.integers(len(_VERBS))],
                 _OBJECTS[rng.integers(len(_OBJECTS))]]
        tail = " ".join(_OBJECTS[j] for j in rng.integers(len(_OBJECTS), size=int(rng.integers(0, 8))))
        out.append(f"{' '.join(words)} (event {i}) {tail}".strip())
    return out


def _percentiles_ms(latencies_s: list[float]) -> dict[str, float]:
    ms = np.asarray(latencies_s) * 1000.0
    return {"p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)),
            "p99_ms": float(np.percentile(ms, 99))}


def bench_embed(n: int = 2_000, embedder: Embedder | None = None, batch: int = 256,
                progress: Progress | None = None) -> dict[str, float]:
    """Texts/s through the embedder, then rows/s written to a scratch LanceDB table."""
    embedder = embedder or MiniLMEmbedder()
    texts = synthetic_texts(n)
    items = [TextItem("bench", f"e{i}", f"s{i % 50}", 1_700_000_000_000_000 + i, "message", t)
             for i, t in enumerate(texts)]
    embedder.embed(texts[:8])  # load the model outside the timing
    records: list[EmbeddingRecord] = []
    t0 = time.perf_counter()
    for start in range(0, n, batch):
        records += embed_items(items[start : start + batch], embedder)
        if progress:
            progress(min(batch, n - start))
    embed_s = time.perf_counter() - t0
    scratch = Path(tempfile.mkdtemp(prefix="agenttrail-bench-lance-"))
    try:
        store = LanceStore(str(scratch), dim=embedder.dim)
        t1 = time.perf_counter()
        for start in range(0, n, 5_000):
            store.upsert(records[start : start + 5_000])
        write_s = time.perf_counter() - t1
        assert store.count() == n
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {"texts": float(n), "texts_per_s": n / embed_s, "rows_written_per_s": n / write_s}


def bench_recall(n_vectors: int = 100_000, tenants: int = 10, queries: int = 200, k: int = 10,
                 dim: int = 384, progress: Progress | None = None) -> dict[str, float]:
    """Tenant-prefiltered search latency (and recall@k against exact search) at `n_vectors` rows.

    Vectors are random unit vectors, the hardest case for a quantised index; real embeddings cluster.
    """
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((n_vectors, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    owner = np.arange(n_vectors) % tenants
    names = [f"t{j}" for j in range(tenants)]
    scratch = Path(tempfile.mkdtemp(prefix="agenttrail-bench-recall-"))
    try:
        store = LanceStore(str(scratch), dim=dim, index_min_rows=n_vectors + 1)  # index built below
        t0 = time.perf_counter()
        step = 10_000
        for start in range(0, n_vectors, step):
            rows = [
                EmbeddingRecord(names[owner[i]], f"e{i}", "s", i, "message", "", tuple(vectors[i].tolist()))
                for i in range(start, min(start + step, n_vectors))
            ]
            store.upsert(rows)
            if progress:
                progress(len(rows))
        write_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        indexed = n_vectors >= 256 * 4
        if indexed:
            store.build_index()
        index_s = time.perf_counter() - t1
        latencies: list[float] = []
        overlap = 0
        for _ in range(queries):
            tenant = int(rng.integers(tenants))
            query = vectors[rng.integers(n_vectors)] + rng.standard_normal(dim).astype(np.float32) * 0.1
            t = time.perf_counter()
            hits = store.search(names[tenant], query, k=k)
            latencies.append(time.perf_counter() - t)
            mine = np.flatnonzero(owner == tenant)
            exact = mine[np.argsort(-(vectors[mine] @ query))[:k]]
            overlap += len({f"e{i}" for i in exact} & {h.event_id for h in hits})
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {"vectors": float(n_vectors), "tenants": float(tenants), "indexed": float(indexed),
            "rows_written_per_s": n_vectors / write_s, "index_build_s": index_s,
            f"recall_at_{k}": overlap / (queries * k), **_percentiles_ms(latencies)}
