"""bench_pipeline's pure parts (the full run needs a broker: `agenttrail bench pipeline`)."""

from __future__ import annotations

import pytest

from agenttrail.processors.bench import bench_pipeline, raw_verify_rate


def test_raw_verify_rate_counts_real_verifications() -> None:
    rate = raw_verify_rate(0.2, b"x" * 250)
    assert 500 < rate < 10_000_000


def test_bench_pipeline_refuses_empty_runs() -> None:
    with pytest.raises(ValueError):
        bench_pipeline("127.0.0.1:1", events=0)
    with pytest.raises(ValueError):
        bench_pipeline("127.0.0.1:1", events=10, workers=0)
