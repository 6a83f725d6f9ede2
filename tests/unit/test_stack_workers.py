"""LocalStack.stop_workers stops the workers only: the e2e bench reuses one warmed stack."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from agenttrail.config import Settings
from agenttrail.stack import LocalStack


def _sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)


def test_stop_workers_leaves_the_other_children_running(tmp_path: Path) -> None:
    stack = LocalStack(Settings(home=tmp_path))
    stack.children = {"worker-w0": _sleeper(), "worker-w1": _sleeper(), "serve": _sleeper()}
    workers = [stack.children["worker-w0"], stack.children["worker-w1"]]
    try:
        stack.stop_workers(timeout=10)
        assert all(proc.poll() is not None for proc in workers)
        assert list(stack.children) == ["serve"]
        assert stack.children["serve"].poll() is None
    finally:
        stack.stop()
    assert all(proc.poll() is not None for proc in workers)
