"""spawn / spawn_cli / stop_process(es): tiny Python children, started and stopped by PID."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from pathlib import Path

from agenttrail.processes import spawn, spawn_cli, stop_process, stop_processes


def _log_has(path: Path, text: str, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text(errors="replace"):
            return True
        time.sleep(0.05)
    return False


def _gone(pid: int, timeout: float = 10.0) -> bool:
    """No such process, or only a zombie left for whoever reaps orphans here."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return True
        if state == "Z":
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_child_logs_sees_overrides_has_own_session_and_stops(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "child.log"  # the folder is made
    code = "import os, time; print('hello', os.environ['PROC_TEST'], flush=True); time.sleep(60)"
    proc = spawn(_python(code), {"PROC_TEST": "over"}, log)
    assert _log_has(log, "hello over")
    assert os.getsid(proc.pid) == proc.pid  # its own session and process group
    stop_process(proc, 10)
    assert proc.returncode == -signal.SIGTERM
    assert _gone(proc.pid)
    stop_process(proc, 10)  # stopping a child that already exited is fine
    stop_processes([proc], 1, group=True)
    assert "hello over" in log.read_text()


def test_a_child_that_ignores_sigterm_is_killed_after_the_timeout(tmp_path: Path) -> None:
    log = tmp_path / "stubborn.log"
    code = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); "
            "time.sleep(60)")
    proc = spawn(_python(code), {}, log)
    assert _log_has(log, "ready")
    started = time.monotonic()
    stop_process(proc, 0.5)
    assert proc.returncode == -signal.SIGKILL
    assert time.monotonic() - started < 10


def test_sigkill_by_pid_leaves_the_group_but_group_stop_reaches_it(tmp_path: Path) -> None:
    code = ("import subprocess, sys, time; "
            "g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
            "print('grandchild', g.pid, flush=True); time.sleep(60)")
    log_a, log_b = tmp_path / "a.log", tmp_path / "b.log"
    a, b = spawn(_python(code), {}, log_a), spawn(_python(code), {}, log_b)
    assert _log_has(log_a, "grandchild") and _log_has(log_b, "grandchild")
    grand_a = int(log_a.read_text().split()[1])
    grand_b = int(log_b.read_text().split()[1])
    try:
        stop_process(a, 10, sig=signal.SIGKILL)  # kill -9 of one PID: its grandchild lives on
        assert a.returncode == -signal.SIGKILL
        assert not _gone(grand_a, timeout=0.3)
        stop_processes([b], 10, group=True)  # the whole group of b
        assert b.returncode == -signal.SIGTERM
        assert _gone(grand_b)
    finally:
        for pid in (grand_a, grand_b):
            if not _gone(pid, timeout=0):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def test_spawn_cli_runs_the_agenttrail_cli_with_this_interpreter(tmp_path: Path) -> None:
    log = tmp_path / "help.log"
    proc = spawn_cli(["--help"], {"COLUMNS": "100"}, log)
    assert proc.args[:3] == [sys.executable, "-m", "agenttrail.cli"]
    assert proc.wait(60) == 0
    assert "Usage" in log.read_text()
