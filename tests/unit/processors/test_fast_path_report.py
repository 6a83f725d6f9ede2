"""A worker says whether verification runs the C fast path: a gauge for /metrics and a warning without it."""

from __future__ import annotations

import logging

import pytest

from agenttrail import native
from agenttrail.metrics import METRICS
from agenttrail.processors import runtime


def test_without_the_fast_path_the_gauge_is_0_and_the_log_warns(monkeypatch: pytest.MonkeyPatch,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(native, "fastpath", None)
    with caplog.at_level(logging.INFO, logger=runtime.__name__):
        runtime._report_fast_path()
    assert METRICS.total("agenttrail_native_fastpath") == 0.0
    assert any(r.levelno == logging.WARNING and "pure-Python" in r.getMessage() for r in caplog.records)


def test_with_the_fast_path_the_gauge_is_1(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(native, "fastpath", object())
    runtime._report_fast_path()
    assert METRICS.total("agenttrail_native_fastpath") == 1.0
