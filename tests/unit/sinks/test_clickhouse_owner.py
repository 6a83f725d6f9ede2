"""Who owns an embedded store: the CLI asks before opening one that `serve` holds."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from agenttrail.sinks.clickhouse.store import embedded_owner


def _status(path: Path, pid: int) -> str:
    path.mkdir(parents=True, exist_ok=True)
    (path / "status").write_text(f"PID: {pid}\nStarted at: 2026-11-23 14:11:16\nRevision: 54515\n")
    return f"chdb://{path}"


def test_a_live_other_process_owns_it(tmp_path: Path) -> None:
    other = subprocess.Popen(["sleep", "30"])
    try:
        assert embedded_owner(_status(tmp_path / "a", other.pid)) == other.pid
    finally:
        other.kill()
        other.wait()
    assert embedded_owner(_status(tmp_path / "a", other.pid)) is None  # gone: free to open


def test_this_process_servers_and_missing_files_are_not_owners(tmp_path: Path) -> None:
    assert embedded_owner(_status(tmp_path / "b", os.getpid())) is None
    assert embedded_owner(f"chdb://{tmp_path / 'nothing-here'}") is None
    assert embedded_owner("http://clickhouse:8123") is None
