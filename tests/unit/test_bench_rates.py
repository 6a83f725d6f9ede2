"""The raw limits are the best of several windows: one slow window does not lower them."""

from __future__ import annotations

import time

import pytest

from agenttrail.processors.bench import best_rate


def test_best_rate_ignores_a_slow_window() -> None:
    calls = {"n": 0}

    def op() -> None:
        calls["n"] += 1
        if calls["n"] <= 100:  # the first window is slowed down, like a busy moment of the VM
            time.sleep(0.0005)

    rate = best_rate(op, windows=3, seconds=0.05)
    assert rate > 20_000  # ~2,000/s in the slow window; the best window is the fast one
    assert calls["n"] > 100


def test_best_rate_times_with_the_given_clock() -> None:
    """With a CPU-time clock only the time the op takes on the clock counts (a fake clock here:
    every call costs exactly 1 ms of it, whatever the wall time)."""
    now = [0.0]

    def op() -> None:
        now[0] += 0.001

    assert best_rate(op, windows=2, seconds=0.5, clock=lambda: now[0]) == pytest.approx(1000, rel=0.01)
