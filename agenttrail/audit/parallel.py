"""Work over independent items in forked worker processes, results in input order.

`verify_records(jobs=N)` uses it to check sessions in parallel: the sorted session list is cut into
contiguous chunks of about equal weight (events), each chunk is checked in a worker forked from
this process and the results come back in chunk order, so concatenating them gives exactly what
one process gives. The items are inherited through fork, never pickled; only the chunk bounds go
to a worker and only its (small) result comes back.

Fork is used only when it is safe: the platform has the 'fork' start method and the process has no
other thread (Python or native, as listed in /proc/self/task), so no lock can be inherited while
held. The work a worker runs must be pure: no logging, no printing, no I/O. Anywhere else (no
/proc, other threads running, one job, a small input) the work runs in-process, and `plan` says
why, for the report.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

PARALLEL_MIN_WEIGHT = 20_000  # below this (events) the fork and pool cost more than they save
CHUNKS_PER_JOB = 4  # a few chunks per worker even out sessions of different sizes

# (work, items) for the lifetime of one pool: set before the workers are forked, read by them.
_shared: tuple[Callable[[Sequence[Any]], Any], Sequence[Any]] | None = None


def default_jobs() -> int:
    return os.cpu_count() or 1


@dataclass(frozen=True, slots=True)
class JobPlan:
    """How many processes will do the work and, when fewer than wanted, why (for the report)."""

    processes: int
    note: str | None = None


def fork_unsafe_reason() -> str | None:
    """None when 'fork' is available and this process runs a single thread (checked in /proc:
    native threads count too); else why not. Without /proc there is no way to tell, so not safe."""
    if "fork" not in multiprocessing.get_all_start_methods():
        return "this platform cannot fork"
    try:
        threads = len(os.listdir("/proc/self/task"))
    except OSError:
        return "no /proc/self/task to tell whether forking is safe"
    return None if threads == 1 else "this process has threads (fork is unsafe)"


def fork_is_safe() -> bool:
    return fork_unsafe_reason() is None


def plan(jobs: int | None, weight: int, items: int) -> JobPlan:
    """How many processes `map_chunks` will use for `items` items of total `weight` (1 = in-process)
    and why fewer than `jobs` (`None` means one per CPU)."""
    wanted = default_jobs() if jobs is None else jobs
    if wanted < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    if wanted == 1:
        return JobPlan(1)
    asked = f"{wanted} wanted{' (one per CPU)' if jobs is None else ''}: "
    n = min(wanted, items)
    if n <= 1:
        reason = "only one session" if items == 1 else "no sessions"
    elif weight < PARALLEL_MIN_WEIGHT:
        reason = f"{weight:,} events, fewer than the {PARALLEL_MIN_WEIGHT:,} at which forking pays"
    elif not fork_is_safe():
        reason = fork_unsafe_reason() or "forking is unsafe here"
    else:
        return JobPlan(n, None if n == wanted else f"{asked}only {items} sessions")
    return JobPlan(1, asked + reason)


def plan_jobs(jobs: int | None, weight: int, items: int) -> int:
    """`plan(...).processes`."""
    return plan(jobs, weight, items).processes


def chunk_bounds(weights: Sequence[int], chunks: int) -> list[tuple[int, int]]:
    """[lo, hi) ranges covering `weights` in order, at most `chunks` of them, of about equal weight."""
    total = sum(weights)
    bounds: list[tuple[int, int]] = []
    lo = done = 0
    for i, w in enumerate(weights):
        done += w
        if i == len(weights) - 1 or (len(bounds) < chunks - 1 and done * chunks >= total * (len(bounds) + 1)):
            bounds.append((lo, i + 1))
            lo = i + 1
    return bounds


def _run_chunk(bounds: tuple[int, int]) -> Any:
    assert _shared is not None, "map_chunks sets the shared work before forking"
    work, items = _shared
    return work(items[bounds[0]:bounds[1]])


def map_chunks(work: Callable[[Sequence[T]], R], items: Sequence[T], weights: Sequence[int],
               jobs: int) -> Iterator[R]:
    """work(chunk) for contiguous chunks of `items`, in `jobs` forked processes, yielded in order.

    `work` and `items` reach the workers through fork (a closure is fine); call `plan` first:
    this does not check again that forking is safe."""
    global _shared
    bounds = chunk_bounds(weights, jobs * CHUNKS_PER_JOB)
    # Keep the garbage collector off the inherited objects: a collection in a worker would write to
    # every one of them and so copy the whole heap page by page. The workers' own garbage is freed
    # by reference counting; it has no cycles worth collecting before they exit.
    freeze = gc.get_freeze_count() == 0
    if freeze:
        gc.freeze()
    _shared = (work, items)
    try:
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork"),
                                 initializer=gc.disable) as pool:
            yield from pool.map(_run_chunk, bounds)
    finally:
        _shared = None
        if freeze:
            gc.unfreeze()
