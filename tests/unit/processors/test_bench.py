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


def test_cpu_seconds_follow_the_work_a_process_does() -> None:
    import os
    import subprocess
    import sys

    from agenttrail.processors.bench import cpu_seconds

    spin = "import time\nt=time.process_time()\nwhile time.process_time()-t<0.6: pass\ntime.sleep(5)"
    busy = subprocess.Popen([sys.executable, "-c", spin])
    try:
        import time

        time.sleep(1.5)
        used = cpu_seconds([busy.pid])
        assert used is not None and 0.5 <= used < 1.5
        assert cpu_seconds([busy.pid, os.getpid()]) > used
    finally:
        busy.kill()
        busy.wait()
    assert cpu_seconds([2**22 + 12345]) is None  # no such process


def test_bench_core_chains_every_event_and_reports_a_ratio() -> None:
    from agenttrail.processors.bench import bench_core

    r = bench_core(events=300, rounds=1)
    assert r["events"] == 300
    assert r["core_events_per_s"] > 0
    # The core verifies in batches: it may pass one-by-one verify, never its own crypto alone.
    assert 0 < r["ratio_batch"] < 1 and r["raw_batch_verify_per_s"] > r["core_events_per_s"]
    assert r["ratio"] == pytest.approx(r["core_events_per_s"] / r["raw_verify_per_s"], rel=0.01)


def test_the_raw_verify_pool_is_a_stream_of_distinct_valid_signatures() -> None:
    from agenttrail.processors.bench import signed_pool, verify_cycle

    pool = signed_pool(size=100, count=40, keys=4)
    assert len({message for _, message, _ in pool}) == 40 and len({key for key, _, _ in pool}) == 4
    assert all(len(message) == 100 for _, message, _ in pool)
    verify = verify_cycle(pool)
    for _ in range(80):  # twice round, every signature checks out
        verify()
    public_key, message, signature = pool[0]
    bad = verify_cycle([(public_key, message + b"x", signature)])
    with pytest.raises(AssertionError):
        bad()
