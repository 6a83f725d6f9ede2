"""The latency bench's percentile is nearest-rank (p99 of 100 samples is the 99th, not the max)."""

from __future__ import annotations

from agenttrail.e2e_bench import percentile


def test_nearest_rank_percentiles() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.99) == 99.0
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 1.0) == 100.0
    assert percentile([7.0], 0.99) == 7.0
    assert percentile(values[:60], 0.99) == 60.0  # with 60 samples p99 is the largest
