"""LanceDB sink: idempotent upserts, tenant-isolated search, validated filters, retention purge."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agenttrail.errors import ConfigError, TenantError
from agenttrail.processors.embed import EmbeddingRecord
from agenttrail.sinks.lancedb import InvalidQuery, LanceStore, tenant_filter

DIM = 384


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def rec(tenant: str, event_id: str, vector: np.ndarray, *, ts: int = 1_000, type: str = "message",
        text: str = "t", session: str = "s1") -> EmbeddingRecord:
    return EmbeddingRecord(tenant, event_id, session, ts, type, text, tuple(vector.tolist()), "test")


@pytest.fixture()
def store(tmp_path: Path) -> LanceStore:
    return LanceStore(str(tmp_path / "lancedb"))


def test_upsert_is_idempotent(store: LanceStore) -> None:
    rng = np.random.default_rng(1)
    batch = [rec("acme", f"e{i}", v) for i, v in enumerate(unit(rng, 50))]
    store.upsert(batch)
    store.upsert(batch)  # a replay of the same embeddings
    assert store.count() == 50
    changed = [rec("acme", "e0", unit(rng, 1)[0], text="re-embedded")]
    store.upsert(changed + batch[1:3] + changed)  # duplicates inside one batch too
    assert store.count() == 50
    hit = store.search("acme", changed[0].vector, k=1)[0]
    assert (hit.event_id, hit.text) == ("e0", "re-embedded") and hit.score == pytest.approx(1.0, abs=1e-5)


def test_reopening_keeps_rows(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    LanceStore(str(tmp_path)).upsert([rec("acme", "e1", unit(rng, 1)[0])])
    assert LanceStore(str(tmp_path)).count() == 1


def test_same_event_id_in_two_tenants_never_overwrites(store: LanceStore) -> None:
    rng = np.random.default_rng(3)
    va, vb = unit(rng, 2)
    store.upsert([rec("acme", "shared-id", va, text="acme's")])
    store.upsert([rec("evil", "shared-id", vb, text="evil's")])
    assert store.count() == 2
    assert [h.text for h in store.search("acme", vb, k=5)] == ["acme's"]


def _isolation_corpus(store: LanceStore, n_other: int) -> np.ndarray:
    rng = np.random.default_rng(4)
    query = unit(rng, 1)[0]
    mine = rec("acme", "mine", unit(rng, 1)[0], text="the only acme row")  # far from the query
    noise = rng.standard_normal((n_other, DIM)).astype(np.float32) * 0.05
    closer = (query + noise) / np.linalg.norm(query + noise, axis=1, keepdims=True)
    store.upsert([mine] + [rec("beta", f"b{i}", v) for i, v in enumerate(closer)])
    store.upsert([rec("beta", "exact", query)])
    return query


def test_another_tenants_closer_rows_are_never_returned(store: LanceStore) -> None:
    query = _isolation_corpus(store, 3000)
    hits = store.search("acme", query, k=10)
    assert [h.event_id for h in hits] == ["mine"]
    beta = store.search("beta", query, k=10)
    assert beta[0].event_id == "exact" and all(h.tenant_id == "beta" for h in beta) and len(beta) == 10


def test_isolation_holds_with_the_vector_index(tmp_path: Path) -> None:
    store = LanceStore(str(tmp_path), index_min_rows=2000)
    query = _isolation_corpus(store, 3000)
    assert store.has_vector_index()
    hits = store.search("acme", query, k=10)
    assert [h.event_id for h in hits] == ["mine"]  # still found: prefilter, not post-filter
    assert all(h.tenant_id == "beta" for h in store.search("beta", query, k=10))


def test_filters_by_type_and_time(store: LanceStore) -> None:
    rng = np.random.default_rng(5)
    vs = unit(rng, 4)
    store.upsert([
        rec("acme", "m1", vs[0], ts=100, type="message"),
        rec("acme", "e1", vs[1], ts=200, type="error"),
        rec("acme", "l1", vs[2], ts=300, type="lesson"),
        rec("acme", "m2", vs[3], ts=400, type="message"),
    ])
    ids = lambda hits: sorted(h.event_id for h in hits)  # noqa: E731
    assert ids(store.search("acme", vs[0], k=10, type="message")) == ["m1", "m2"]
    assert ids(store.search("acme", vs[0], k=10, type=["error", "lesson"])) == ["e1", "l1"]
    assert ids(store.search("acme", vs[0], k=10, ts_from=200, ts_to=400)) == ["e1", "l1"]
    assert len(store.search("acme", vs[0], k=2)) == 2


@pytest.mark.parametrize("tenant", ["", "acme' OR '1'='1", "ACME", "acme\x00", None, "a" * 64])
def test_search_requires_a_valid_tenant(store: LanceStore, tenant: object) -> None:
    with pytest.raises(TenantError):
        store.search(tenant, np.ones(DIM, np.float32), k=1)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"type": "message' OR tenant_id != 'x"},
        {"type": ["lesson", "x')"]},
        {"ts_from": "0 OR 1=1"},
        {"ts_to": 1.5},
        {"ts_from": True},
        {"k": 0},
        {"k": 100_000},
        {"vector": np.ones(3, np.float32)},
        {"vector": np.full(DIM, np.nan, np.float32)},
    ],
)
def test_search_rejects_bad_parameters(store: LanceStore, kwargs: dict) -> None:
    args = {"vector": np.ones(DIM, np.float32), "k": 5} | kwargs
    with pytest.raises(InvalidQuery):
        store.search("acme", **args)


def test_filter_text_is_built_from_validated_values_only() -> None:
    assert tenant_filter("acme", types=["lesson"], ts_from=1, ts_to=2, exclude_types=["error"]) == (
        "tenant_id = 'acme' AND type IN ('lesson') AND type NOT IN ('error') AND ts >= 1 AND ts < 2"
    )


def test_purge_keeps_lessons_newer_rows_and_other_tenants(store: LanceStore) -> None:
    rng = np.random.default_rng(6)
    vs = unit(rng, 6)
    store.upsert([
        rec("acme", "old-msg", vs[0], ts=10, type="message"),
        rec("acme", "old-err", vs[1], ts=20, type="error"),
        rec("acme", "old-lesson", vs[2], ts=30, type="lesson"),
        rec("acme", "new-msg", vs[3], ts=500, type="message"),
        rec("beta", "beta-old", vs[4], ts=10, type="message"),
    ])
    assert store.purge("acme", before_ts_micros=100) == 2
    left = sorted(h.event_id for h in store.search("acme", vs[0], k=10))
    assert left == ["new-msg", "old-lesson"]
    assert store.count("beta") == 1
    assert store.purge("acme", before_ts_micros=1_000, keep_types=()) == 2
    assert store.count("acme") == 0
    with pytest.raises(TenantError):
        store.purge("acme' OR '1'='1", before_ts_micros=1_000)


def test_purge_of_named_sessions_leaves_other_sessions_whole(store: LanceStore) -> None:
    rng = np.random.default_rng(7)
    vs = unit(rng, 4)
    store.upsert([
        rec("acme", "a1", vs[0], ts=10, type="message", session="gone"),
        rec("acme", "a2", vs[1], ts=20, type="lesson", session="gone"),
        rec("acme", "b1", vs[2], ts=10, type="message", session="live"),
        rec("acme", "c1", vs[3], ts=10, type="message", session="it's odd"),
    ])
    assert store.purge("acme", before_ts_micros=100, session_ids=["gone", "it's odd"]) == 2
    left = sorted(h.event_id for h in store.search("acme", vs[0], k=10))
    assert left == ["a2", "b1"]  # the lesson stays, the live session stays whole
    with pytest.raises(InvalidQuery):
        store.purge("acme", before_ts_micros=100, session_ids=["x\x00y"])


def test_dimension_mismatch_is_a_config_error(tmp_path: Path) -> None:
    store = LanceStore(str(tmp_path))
    with pytest.raises(ConfigError):
        store.upsert([EmbeddingRecord("acme", "e", "s", 1, "message", "t", (1.0, 0.0), "m")])
    with pytest.raises(ConfigError):
        LanceStore(str(tmp_path), dim=8)
