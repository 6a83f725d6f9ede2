"""Start an ``agenttrail`` command as a child process, and stop children by PID (never by name).

``spawn_cli(args, env_overrides, log_path)`` runs ``python -m agenttrail.cli <args>`` with this
interpreter (``spawn(argv, ...)`` runs any ``argv`` the same way):
- in a new session, so the child leads its own process group (group id = its PID): Ctrl-C in a
  terminal reaches only the parent, and the child's group can be signalled as one;
- with the parent's environment and ``env_overrides`` laid over it;
- with stdout and stderr appended to ``log_path`` (its folder is made); the parent closes its copy
  of the handle at once, so the child owns the file;
- with stdin on /dev/null (no command it starts reads stdin).

``stop_processes(procs, timeout)`` sends SIGTERM (or ``sig``) to each child still running, the
last started first, waits for them all against one shared deadline, and sends SIGKILL to those
still running then. ``group=True`` signals each child's process group instead of its PID alone.
``stop_process(proc, timeout)`` is the same for one child. A child that already exited is fine.

What each caller passes:
- ``agenttrail.stack.LocalStack`` (``agenttrail demo`` / ``bench``): the workers and ``serve``;
  log ``<home>/<name>.log``; overrides = the whole stack configuration (home, bootstrap, ClickHouse,
  LanceDB, API host and port, partitions, checkpoint interval, one embedder thread,
  ``HF_HUB_OFFLINE=1``). Stops all its children at once: ``stop_processes(..., group=True)``.
- ``agenttrail.processors.bench.bench_pipeline``: ``worker --name N --no-embed --no-checkpoints``;
  log ``<home>/worker-<N>.log``; overrides = bootstrap and home. Stops each worker in turn with
  ``stop_process`` (its PID only).
- ``tests/integration/pipeline_support.py`` (``start_worker`` / ``stop_worker``):
  ``worker --name N --no-embed <args>``; log ``<home>/worker-<N>.log``; overrides = bootstrap,
  home and a 1 s checkpoint interval. ``stop_worker(kill=True)`` is ``stop_process(sig=SIGKILL)``:
  the ``kill -9`` of one worker's PID that the crash tests rely on.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path


def spawn(argv: Sequence[str], env_overrides: Mapping[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """``argv`` as a child in its own session, its output appended to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **env_overrides}
    with open(log_path, "ab") as log:  # the child has its own copy of the handle once started
        return subprocess.Popen(list(argv), env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def spawn_cli(args: Sequence[str], env_overrides: Mapping[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """``python -m agenttrail.cli *args`` (this interpreter) as ``spawn`` starts it."""
    return spawn([sys.executable, "-m", "agenttrail.cli", *args], env_overrides, log_path)


def _signal(proc: subprocess.Popen[bytes], sig: int, group: bool) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if group:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)


def stop_processes(procs: Sequence[subprocess.Popen[bytes]], timeout: float = 30.0, *, group: bool = False,
                   sig: int = signal.SIGTERM) -> None:
    """``sig`` to every child still running (last first), one ``timeout`` for all, then SIGKILL."""
    for proc in reversed(procs):
        if proc.poll() is None:
            _signal(proc, sig, group)
    deadline = time.monotonic() + timeout
    for proc in procs:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _signal(proc, signal.SIGKILL, group)
            proc.wait(10)


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 30.0, *, group: bool = False,
                 sig: int = signal.SIGTERM) -> None:
    """``sig`` to one child if it still runs, ``timeout`` for it to exit, then SIGKILL."""
    stop_processes([proc], timeout, group=group, sig=sig)
