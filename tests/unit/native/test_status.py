"""`agenttrail status` says which native code a worker started from here would use."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agenttrail import native


def _status(tmp_path: Path, **env: str) -> dict[str, object]:
    out = subprocess.run([sys.executable, "-m", "agenttrail.cli", "status", "--json"], capture_output=True, text=True,
                         check=True, env={**os.environ, "AGENTTRAIL_HOME": str(tmp_path), **env}).stdout
    return json.loads(out)


def test_status_reports_the_native_code_in_use(tmp_path: Path) -> None:
    found = _status(tmp_path)
    assert found["parsing_fast_path"] == native.status()
    assert found["ed25519_verifier"] == native.ed25519_status()


@pytest.mark.skipif(native.ed25519_status() != "on", reason="the Rust Ed25519 library is not built here")
def test_status_says_when_libsodium_verifies_instead(tmp_path: Path) -> None:
    found = _status(tmp_path, AGENTTRAIL_NATIVE="0")
    assert found["ed25519_verifier"] == "off (AGENTTRAIL_NATIVE=0): libsodium verifies"
    assert found["parsing_fast_path"] == "off (AGENTTRAIL_NATIVE=0)"
