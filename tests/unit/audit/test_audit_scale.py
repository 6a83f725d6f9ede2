"""A clean dataset of 100,000 signed, chained events verifies (exit 0), with both rates reported."""

from __future__ import annotations

import pytest

from agenttrail.audit.bench import run_audit, synthetic_dataset
from agenttrail.cli.audit import show


@pytest.mark.slow
def test_100k_clean_events_verify_with_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    data = synthetic_dataset(100_000, tenant_id="scale", sessions=200, agents=8)
    chain_only = run_audit(data, signatures=False)
    assert chain_only.ok and chain_only.events == 100_000 and chain_only.sessions == 200
    full = run_audit(data, signatures=True)
    assert full.ok, full.failures[:3]
    assert full.signatures_checked == 100_000 and full.checkpoints_checked == 1
    show(full, as_json=False, title="100k")  # raises SystemExit(1) unless everything verified
    out = capsys.readouterr().out
    assert "OK" in out and "100000" in out
    assert chain_only.chain_events_per_s and full.signatures_per_s
