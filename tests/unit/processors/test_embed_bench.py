"""The bench helpers run end to end at a small size and report what `agenttrail bench embed` prints."""

from __future__ import annotations

from agenttrail.processors.embed_bench import bench_embed, bench_recall, synthetic_texts
from agenttrail.processors.embedder import FakeEmbedder


def test_synthetic_texts_are_distinct() -> None:
    texts = synthetic_texts(500)
    assert len(set(texts)) == 500


def test_bench_embed_reports_rates() -> None:
    fake = FakeEmbedder(dim=16)
    result = bench_embed(300, embedder=fake, batch=100)
    assert result["texts"] == 300 and result["texts_per_s"] > 0 and result["rows_written_per_s"] > 0
    assert sum(len(c) for c in fake.calls) == 300 + 8  # every text once, plus the warm-up


def test_bench_recall_reports_latency_and_accuracy() -> None:
    result = bench_recall(3_000, tenants=3, queries=20, dim=32)
    assert result["indexed"] == 1.0
    assert 0 < result["p50_ms"] <= result["p95_ms"] <= result["p99_ms"]
    assert result["recall_at_10"] >= 0.5
