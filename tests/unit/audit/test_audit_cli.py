"""`agenttrail audit verify-bundle` exit codes: 0 verified, 1 verification failure, 2 usage error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agenttrail.audit.bench import synthetic_dataset
from agenttrail.audit.bundle import build_bundle
from agenttrail.cli import main


def run(argv: list[str]) -> int:
    """main()'s return code, or the code of the SystemExit a verification failure raises."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


@pytest.fixture(scope="module")
def bundle() -> dict:
    data = synthetic_dataset(120, tenant_id="cli", sessions=3, agents=1)
    return build_bundle("cli", "s-00001", data.records, data.keys, data.heads(), [data.checkpoint],
                        [data.service_key.verifier], data.service_key, 7)


def test_verify_bundle_exit_codes(tmp_path: Path, bundle: dict, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps(bundle))
    assert run(["audit", "verify-bundle", str(good), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is True and out["events"] == 40

    bad = json.loads(json.dumps(bundle))
    bad["records"][3]["ts"] += 1
    tampered = tmp_path / "bad.json"
    tampered.write_text(json.dumps(bad))
    assert run(["audit", "verify-bundle", str(tampered)]) == 1
    assert "s-00001" in capsys.readouterr().out

    assert run(["audit", "verify-bundle", str(tmp_path / "missing.json")]) == 2
    assert run(["audit", "verify-bundle", str(good), "--service-key", "garbage"]) == 2
