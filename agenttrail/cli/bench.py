"""`agenttrail bench [all|sdk|pipeline|sink|embed|api|audit|e2e]`: one table of measured figures.

Raw limits (Ed25519 sign/verify per core, SHA-256 chain steps/s, ClickHouse raw insert rows/s)
are measured in the same run, and each figure is shown with its ratio to its limit.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from agenttrail.cli.output import console, emit
from agenttrail.config import Settings, load_settings

SUITES = ("raw", "sdk", "pipeline", "sink", "embed", "api", "audit", "e2e")


def register(app: typer.Typer) -> None:
    app.command("bench", help="Run the benchmarks and print one table (raw limits, figures, ratios).")(bench)


def _machine() -> dict[str, Any]:
    mem = 0
    with contextlib.suppress(ValueError, OSError):
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1 << 30)
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": mem, "python": platform.python_version()}


def _raw(rows: list[dict[str, Any]], limits: dict[str, float], shown: bool = True) -> None:
    """The raw limits. ``shown=False`` (a suite's child process, whose raw rows are dropped) skips
    the libsodium rate, which is a reference for the table and no figure's limit."""
    from agenttrail import crypto
    from agenttrail.processors.bench import (
        VERIFY_BATCH,
        batch_verify_cycle,
        best_rate,
        signed_pool,
        verify_cycle,
    )
    from agenttrail.processors.chain import bench_chain

    key = crypto.SigningKey.generate()
    msg = os.urandom(200)
    # A limit is the best the core does: best of 5 windows, so one slow moment of a shared VM
    # does not lower the limit (and flatter every ratio against it). Verify runs over distinct
    # signed messages, as a stream of events is.
    limits["ed25519_sign"] = best_rate(lambda: key.sign(msg))
    pool = signed_pool(200, count=4 * VERIFY_BATCH)
    limits["ed25519_verify"] = best_rate(verify_cycle(pool))
    if shown:
        limits["ed25519_verify_libsodium"] = best_rate(verify_cycle(pool, crypto.sodium_verify))
    limits["ed25519_verify_batch"] = best_rate(batch_verify_cycle(pool), step=1) * VERIFY_BATCH
    chain = bench_chain(200_000)
    limits["chain_steps"] = float(next(v for k, v in chain.items() if "extend" in k or "steps" in k))
    rows += [
        _row("raw", f"Ed25519 sign / s (1 core, {'native' if crypto.VERIFIER == 'native' else 'OpenSSL'})",
             limits["ed25519_sign"]),
        _row("raw", f"Ed25519 verify / s, one by one (1 core, {crypto.VERIFIER})", limits["ed25519_verify"]),
        _row("raw", "Ed25519 verify / s, one by one (1 core, libsodium)", limits.get("ed25519_verify_libsodium")),
        _row("raw", f"Ed25519 verify / s, batches of {VERIFY_BATCH} (1 core)", limits["ed25519_verify_batch"]),
        _row("raw", "SHA-256 chain steps / s (1 core)", limits["chain_steps"]),
    ]


def _row(suite: str, figure: str, value: float | None, limit: float | None = None, unit: str = "") -> dict[str, Any]:
    ratio = round(value / limit, 2) if value is not None and limit else None
    return {"suite": suite, "figure": figure, "value": None if value is None else round(value, 1),
            "unit": unit, "ratio_to_raw": ratio}


def _sdk(settings: Settings, rows: list[dict[str, Any]], limits: dict[str, float], bootstrap: str) -> None:
    from agenttrail.producers.bench import bench_sdk

    r = bench_sdk(seconds=6.0, bootstrap=bootstrap, partitions=settings.partitions)
    rows.append(_row("sdk", "signed+encoded events / s (1 core)", r["signed_encoded_events_per_s"],
                     limits.get("ed25519_sign")))
    rows.append(_row("sdk", "signed+acknowledged events / s (1 core)", r.get("signed_acked_events_per_s"),
                     limits.get("ed25519_sign")))


def _pipeline(settings: Settings, rows: list[dict[str, Any]], limits: dict[str, float], bootstrap: str) -> None:
    from agenttrail.processors.bench import bench_core, bench_pipeline

    core = bench_core()
    rows.append(_row("pipeline", "verify+chain core alone, events / s on 1 core (no Kafka; ratio to one-by-one "
                                 "verify of the same signatures)", core["core_events_per_s"], core["raw_verify_per_s"]))
    rows.append(_row("pipeline", "verify+chain core alone, events / s on 1 core (ratio to batch verify of the "
                                 "same signatures)", core["core_events_per_s"], core["raw_batch_verify_per_s"]))
    r = bench_pipeline(bootstrap, events=50_000, workers=1, settings=settings)
    # The highest verify rate this run measured is the limit: the raw suite's (wall clock) or the
    # one taken in CPU seconds right before and after the workers ran.
    limit = max(limits.get("ed25519_verify", 0.0), r["raw_verify_per_s"])
    batch_limit = max(limits.get("ed25519_verify_batch", 0.0), r["raw_batch_verify_per_s"])
    rows.append(_row("pipeline", "Ed25519 verify / s, one by one (1 core, CPU s, around the pipeline run)",
                     r["raw_verify_per_s"]))
    rows.append(_row("pipeline", "Ed25519 verify / s, in batches (1 core, CPU s, around the pipeline run)",
                     r["raw_batch_verify_per_s"]))
    rows.append(_row("pipeline", "verified+chained events / s per worker core (events / worker CPU s; ratio to "
                                 "one-by-one verify)", r["events_per_worker_cpu_s"], limit))
    rows.append(_row("pipeline", "verified+chained events / s per worker core (ratio to batch verify)",
                     r["events_per_worker_cpu_s"], batch_limit))
    rows.append(_row("pipeline", "verified+chained events / s, 1 worker (wall clock, shares 2 cores with the broker)",
                     r["events_per_s_per_worker"], limit))


def _sink(rows: list[dict[str, Any]], limits: dict[str, float]) -> None:
    from agenttrail.sinks.clickhouse.bench import bench_clickhouse

    r = bench_clickhouse(rows=300_000)
    limits["clickhouse_insert"] = r["raw_rows_per_s"]
    rows.append(_row("raw", "ClickHouse raw insert rows / s", r["raw_rows_per_s"]))
    rows.append(_row("sink", "ClickHouse sink rows / s (decode+map+insert)",
                     r.get("decode_sink_rows_per_s", r["sink_rows_per_s"]), r["raw_rows_per_s"]))


def _embed(rows: list[dict[str, Any]]) -> None:
    from agenttrail.processors.embed_bench import bench_embed, bench_recall

    e = bench_embed(1000)
    rows.append(_row("embed", "texts embedded / s (MiniLM int8, CPU)", e["texts_per_s"]))
    rows.append(_row("embed", "LanceDB rows written / s", e["rows_written_per_s"]))
    r = bench_recall(100_000)
    rows.append(_row("embed", "recall p95 at 100k vectors", r["p95_ms"], unit="ms"))


def _api(rows: list[dict[str, Any]]) -> None:
    import tempfile

    from agenttrail.api.bench import bench_api
    from agenttrail.sinks.clickhouse.schema import open_store

    with tempfile.TemporaryDirectory(prefix="agenttrail-bench-api-") as tmp:
        store = open_store(f"chdb://{tmp}/clickhouse", database="bench_api")
        try:
            r = bench_api(store, n_events=1_000_000)
        finally:
            store.close()
    for name, stats in sorted(r.get("queries", r).items()):
        if isinstance(stats, dict) and "p95_ms" in stats:
            rows.append(_row("api", f"API {name} at 1M events: p95 (p50 {stats['p50_ms']:.1f}, "
                                    f"p99 {stats['p99_ms']:.1f})", stats["p95_ms"], unit="ms"))


def _audit(rows: list[dict[str, Any]], limits: dict[str, float]) -> None:
    from agenttrail.audit.bench import bench_audit

    r = bench_audit(100_000)
    jobs = int(r["jobs"])  # ratios of the multi-process figures are to `jobs` one-core limits
    # signatures are checked in batches, as the workers check them: the batch rate is their limit
    chain_limit, verify_limit = limits.get("chain_steps"), limits.get("ed25519_verify_batch")
    procs = f"{jobs} processes" if jobs > 1 else "1 process"
    rows.append(_row("audit", "audit chain check events / s (1 process)", r["chain_events_per_s_1core"],
                     chain_limit))
    if jobs > 1:
        rows.append(_row("audit", f"audit chain check events / s ({procs})", r["chain_events_per_s"],
                         chain_limit and chain_limit * jobs))
    rows.append(_row("audit", f"audit with signatures events / s ({procs})", r["with_signatures_events_per_s"],
                     verify_limit and verify_limit * jobs))


def _e2e(settings: Settings, rows: list[dict[str, Any]], limits: dict[str, float]) -> None:
    from agenttrail.e2e_bench import bench_end_to_end, bench_latency

    results = bench_end_to_end(settings, events=60_000, worker_counts=(1, 2))
    verify_limit = limits.get("ed25519_verify_batch")  # the workers verify in batches
    for r in results:
        rows.append(_row("e2e", f"end to end events / s, {r['workers']} worker(s)", r["events_per_s"],
                         verify_limit))
    if results and results[0]["cold_events_per_s"]:
        rows.append(_row("e2e", "end to end events / s, 1 worker, first round on a fresh broker JVM",
                         results[0]["cold_events_per_s"], verify_limit))
    lat = bench_latency(settings)
    rows.append(_row("e2e", "produce → queryable p50", lat["p50_ms"], unit="ms"))
    rows.append(_row("e2e", "produce → queryable p99", lat["p99_ms"], unit="ms"))


def _in_child(suite: str) -> list[dict[str, Any]]:
    """Run one suite in its own process (chDB is one engine per process; memory is returned)."""
    import subprocess
    import sys
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        proc = subprocess.run([sys.executable, "-m", "agenttrail.cli", "bench", suite, "--json", out.name,
                               "--quiet"], check=False)
        if proc.returncode != 0:
            return [{"suite": suite, "figure": f"FAILED: exit code {proc.returncode}", "value": None,
                     "unit": "", "ratio_to_raw": None}]
        figures = json.loads(Path(out.name).read_text())["figures"]
    return [f for f in figures if f["suite"] != "raw" or "ClickHouse" in f["figure"]]


def bench(
    suite: str = typer.Argument("all", help=f"One of: all, {', '.join(SUITES)}."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the results to this JSON file."),
    quiet: bool = typer.Option(False, "--quiet", hidden=True, help="No table (used for child runs)."),
) -> None:
    from agenttrail.errors import ConfigError

    if suite != "all" and suite not in SUITES:
        raise ConfigError(f"unknown bench suite {suite!r}: use all or one of {', '.join(SUITES)}")
    settings = load_settings()
    rows: list[dict[str, Any]] = []
    limits: dict[str, float] = {}
    started = time.monotonic()
    if suite == "all":
        with console.status("bench: raw limits…"):
            _raw(rows, limits)
        for name in SUITES[1:]:
            with console.status(f"bench: {name} (own process)…"):
                rows += _in_child(name)
    else:
        _run_suite(settings, suite, rows, limits, shown=not quiet)
    result = {"machine": _machine(), "seconds": round(time.monotonic() - started, 1), "figures": rows}
    if not quiet:
        emit(rows, as_json=False, title=f"agenttrail bench · {result['machine']['cpu']} · "
                                        f"{result['machine']['cores']} cores · {result['seconds']:.0f}s",
             columns=["suite", "figure", "value", "unit", "ratio_to_raw"])
    if json_out is not None:
        json_out.write_text(json.dumps(result, indent=2))
        if not quiet:
            console.print(f"wrote {json_out}")


def _run_suite(settings: Settings, suite: str, rows: list[dict[str, Any]], limits: dict[str, float],
               shown: bool = True) -> None:
    """Raw limits, then one suite, in this process."""
    bootstrap = settings.kafka_bootstrap or ""
    with contextlib.ExitStack() as stack:
        if suite in ("sdk", "pipeline") and not bootstrap:
            from agenttrail.kafka.broker import temporary_broker

            bootstrap = stack.enter_context(temporary_broker("agenttrail-bench-kafka-")).bootstrap
        steps: dict[str, Callable[[], None]] = {
            "raw": lambda: None,
            "sdk": lambda: _sdk(settings, rows, limits, bootstrap),
            "pipeline": lambda: _pipeline(settings, rows, limits, bootstrap),
            "sink": lambda: _sink(rows, limits),
            "embed": lambda: _embed(rows),
            "api": lambda: _api(rows),
            "audit": lambda: _audit(rows, limits),
            "e2e": lambda: _e2e(settings, rows, limits),
        }
        _raw(rows, limits, shown)
        try:
            steps[suite]()
        except Exception as exc:  # one failing suite must not hide the others' figures
            rows.append({"suite": suite, "figure": f"FAILED: {exc}"[:100], "value": None, "unit": "",
                         "ratio_to_raw": None})
