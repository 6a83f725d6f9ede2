"""`agenttrail audit verify|replay|export|verify-bundle`: prove the trail.

Exit codes: 0 everything verifies, 1 a verification failure, 2 bad usage (one-line error).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from agenttrail.audit.bundle import build_bundle, verify_bundle
from agenttrail.audit.compare import compare_records
from agenttrail.audit.report import AuditFailure, AuditReport, combine
from agenttrail.audit.sources import Loaded, load_from_kafka, load_from_store
from agenttrail.audit.verify import service_verifiers, verify_records
from agenttrail.cli.output import console, emit
from agenttrail.config import Settings, load_settings
from agenttrail.errors import AgentTrailError, ConfigError
from agenttrail.kafka.topics import validate_tenant_id

err = Console(stderr=True)
FAILURE_COLUMNS = ("check", "kind", "tenant_id", "session_id", "chain_index", "expected", "actual", "detail")
MAX_LISTED = 50

JSON = typer.Option(False, "--json", help="Machine-readable output.")
TENANT = typer.Option(..., "--tenant", "-t", help="Tenant id.")


class AuditUsageError(ConfigError):
    code = "audit_usage"


def register(app: typer.Typer) -> None:
    audit = typer.Typer(help="Verify the trail: chains, signatures, checkpoints, projections.",
                        no_args_is_help=True)
    audit.command("verify", help="Recompute chains, check signatures and checkpoints, compare ledger "
                                 "and ClickHouse.")(verify)
    audit.command("replay", help="Re-run verify+chain over the raw events topic, rebuild ClickHouse in a "
                                 "fresh database and diff it with the live table.")(replay)
    audit.command("export", help="Write a self-contained signed bundle of one session.")(export)
    audit.command("verify-bundle", help="Verify an exported bundle offline.")(verify_bundle_cmd)
    app.add_typer(audit, name="audit")


# -- helpers -------------------------------------------------------------------------------------------
@contextmanager
def _registry_view(settings: Settings) -> Iterator[Any]:
    from agenttrail.control.service import Registry

    registry = Registry.open(settings)
    try:
        with registry.read() as view:
            yield view
    finally:
        registry.close()


def _bootstrap(settings: Settings) -> str:
    from agenttrail.kafka.broker import resolve_bootstrap

    return resolve_bootstrap(settings)


@contextmanager
def _progress(label: str, total: int | None, enabled: bool) -> Iterator[Callable[[int], None]]:
    if not enabled:
        yield lambda _n: None
        return
    columns = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn()]
    # No auto-refresh thread: `audit verify` forks worker processes only from a single-threaded process.
    with Progress(*columns, console=err, transient=True, auto_refresh=False) as progress:
        task = progress.add_task(label, total=total)
        shown = 0.0

        def tick(n: int) -> None:
            nonlocal shown
            progress.advance(task, n)
            if time.monotonic() - shown > 0.1:
                progress.refresh()
                shown = time.monotonic()

        yield tick


def _micros(value: str | None, what: str) -> int | None:
    if value is None:
        return None
    if value.isdigit():
        return int(value)
    try:
        return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1_000_000)
    except ValueError:
        raise AuditUsageError(f"--{what} must be epoch microseconds or an ISO 8601 time, got {value!r}") from None


def _window(loaded: Loaded, start: int | None, end: int | None) -> None:
    """Keep whole sessions that have an event in [start, end): chains are only verifiable whole."""
    if start is None and end is None:
        return
    lo, hi = start or 0, end or (1 << 63)
    keep = {r.envelope.session_id for r in loaded.records if lo <= r.envelope.ts < hi}
    loaded.records = [r for r in loaded.records if r.envelope.session_id in keep]


def _open_store(settings: Settings) -> Any:
    """The ClickHouse store, or None when the embedded engine is owned by a running server."""
    from agenttrail.sinks.clickhouse.schema import open_store
    from agenttrail.sinks.clickhouse.store import embedded_owner

    if embedded_owner(settings.clickhouse_url) is not None:  # `serve` owns it: go through its API
        return None
    try:
        return open_store(settings.clickhouse_url)
    except Exception as exc:  # chDB: "Error initializing EmbeddedServer" when `serve` owns it
        if settings.clickhouse_url.startswith("chdb:"):
            return None
        raise AuditUsageError(f"cannot open ClickHouse at {settings.clickhouse_url}: {exc}") from None


def _via_api(settings: Settings, session: str | None, api_key: str | None) -> AuditReport:
    if not api_key:
        raise AuditUsageError("the embedded ClickHouse store is owned by a running `agenttrail serve`: "
                              "pass --api-key (scope audit:read) to verify through its API")
    url = f"http://{settings.api_host}:{settings.api_port}/api/audit/verify"
    if session:
        url += f"?session={urllib.parse.quote(session)}"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {api_key}"})
    try:
        with urllib.request.urlopen(request, timeout=600) as response:
            body = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise AuditUsageError(f"API {url} answered {exc.code}: {exc.read()[:200]!r}") from None
    except OSError as exc:
        raise AuditUsageError(f"cannot reach the API at {url}: {exc}") from None
    failures = tuple(AuditFailure(**{k: f.get(k) for k in AuditFailure.__slots__ if k in f})
                     for f in body.get("failures", []))
    return AuditReport(tenant_id=body.get("tenant_id"), source="clickhouse (via API)",
                       sessions=body.get("sessions", 0), events=body.get("events", 0),
                       signatures_checked=body.get("signatures_checked", 0),
                       checkpoints_checked=body.get("checkpoints_checked", 0),
                       anchors_checked=body.get("anchors_checked", 0), failures=failures,
                       notes=tuple(body.get("notes", ())), processes=body.get("processes", 1),
                       processes_note=body.get("processes_note"))


def show(report: AuditReport, as_json: bool, title: str) -> None:
    """Print the report and leave with exit code 1 unless it verified."""
    if as_json:
        emit(report.to_json(), as_json=True)
    else:
        emit(report.summary(), as_json=False, title=title)
        if report.failures:
            emit(report.failure_rows(MAX_LISTED), as_json=False, title="failures (first bad record of each)",
                 columns=FAILURE_COLUMNS)
            if len(report.failures) > MAX_LISTED:
                console.print(f"… and {len(report.failures) - MAX_LISTED} more (use --json for all)")
        for note in report.notes:
            console.print(f"[dim]note: {note}[/dim]")
    if not report.ok:
        raise SystemExit(1)  # not typer.Exit: cli.main drops the code click returns for it


# -- commands ------------------------------------------------------------------------------------------
def verify(
    tenant: str = TENANT,
    session: str | None = typer.Option(None, "--session", "-s", help="Only this session."),
    since: str | None = typer.Option(None, "--from", help="Sessions with events at or after (ISO or micros)."),
    until: str | None = typer.Option(None, "--to", help="Sessions with events before (ISO or micros)."),
    source: str = typer.Option("ledger", help="ledger (Kafka topic) or clickhouse."),
    compare: bool = typer.Option(True, "--compare/--no-compare",
                                 help="With --source ledger, also compare ClickHouse row by row."),
    signatures: bool = typer.Option(True, "--signatures/--no-signatures", help="Check agent signatures."),
    api_key: str | None = typer.Option(None, "--api-key",
                                       help="When `serve` owns the embedded store: verify through its API."),
    jobs: int | None = typer.Option(None, "--jobs", "-j", min=1,
                                    help="Processes checking sessions (default: one per CPU; 1 = this one). "
                                         "Workers are forked only where that is safe (Linux, no other thread "
                                         "in this process, e.g. not with --source clickhouse on chDB); the "
                                         "report says how many did, and why fewer."),
    as_json: bool = JSON,
) -> None:
    validate_tenant_id(tenant)
    if source not in ("ledger", "clickhouse"):
        raise AuditUsageError(f"--source must be ledger or clickhouse, got {source!r}")
    start, end = _micros(since, "from"), _micros(until, "to")
    settings = load_settings()
    store = None
    if source == "clickhouse":
        store = _open_store(settings)
        if store is None:
            show(_via_api(settings, session, api_key), as_json, f"audit verify {tenant} (via API)")
            return
    whole = session is None and start is None and end is None
    with _registry_view(settings) as view:
        if source == "ledger":
            with _progress("reading the ledger", None, not as_json) as tick:
                loaded = load_from_kafka(_bootstrap(settings), tenant, session_id=session, progress=tick)
        else:
            loaded = load_from_store(store, tenant, session)
    # The registry is closed and its view stays as it was read. With its threads gone, verify_records
    # may fork workers; that is also why ClickHouse (chDB starts threads) is opened for the ledger
    # comparison only afterwards.
    _window(loaded, start, end)
    with _progress("verifying", len(loaded.records), not as_json) as tick:
        report = verify_records(loaded.records, view, checkpoints=loaded.checkpoints, anchors=loaded.anchors,
                                service_keys=service_verifiers(view), signatures=signatures,
                                whole_tenant=whole, tenant_id=tenant, source=source, progress=tick, jobs=jobs)
    report = report.with_failures(loaded.failures)
    if source == "ledger" and compare:
        store = _open_store(settings)
        if store is None:
            report = report.with_notes("ClickHouse comparison skipped: the embedded store is owned by a "
                                       "running server (use --source clickhouse --api-key …)")
        else:
            from agenttrail.audit.sources import records_from_store

            rows = records_from_store(store, tenant, session)
            _window(rows, start, end)
            n, diff = compare_records(loaded.records, rows.records)
            report = combine(report, AuditReport(tenant_id=tenant, source=source, rows_compared=n,
                                                 failures=tuple(rows.failures + diff)))
    if not whole:
        report = report.with_notes("session/time filter: checkpoint roots not compared with the session heads")
    show(report, as_json, f"audit verify {tenant}")


def replay(
    tenant: str = TENANT,
    keep: bool = typer.Option(False, "--keep", help="Keep the rebuilt database replay_<ms>."),
    ledger: bool = typer.Option(True, "--ledger/--no-ledger", help="Also diff the replay with the ledger topic."),
    as_json: bool = JSON,
) -> None:
    from agenttrail.audit.replay import replay_tenant
    from agenttrail.processors.chain_worker import policy_from

    validate_tenant_id(tenant)
    settings = load_settings()
    probe = _open_store(settings)
    if probe is None:
        raise AuditUsageError("the embedded ClickHouse store is owned by a running server: stop it to replay")
    probe.close()
    with _registry_view(settings) as view, _progress("reading raw events", None, not as_json) as tick:
        report = replay_tenant(_bootstrap(settings), settings.clickhouse_url, view, tenant, policy_from(settings),
                               keep=keep, compare_ledger=ledger, progress=tick)
    show(report, as_json, f"audit replay {tenant}")


def export(
    tenant: str = TENANT,
    session: str = typer.Option(..., "--session", "-s", help="The session to export."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Output file (default: <tenant>-<session>.json)."),
    as_json: bool = JSON,
) -> None:
    from agenttrail.crypto import load_private_key
    from agenttrail.processors.service_key import DEFAULT_KEY_NAME, ServiceKey, service_key_path

    validate_tenant_id(tenant)
    settings = load_settings()
    key_path = service_key_path(settings)
    if not key_path.exists():
        raise AuditUsageError(f"no service key at {key_path}: export runs where the worker's key lives")
    signer = ServiceKey(DEFAULT_KEY_NAME, load_private_key(key_path))
    with _registry_view(settings) as view:
        loaded = load_from_kafka(_bootstrap(settings), tenant)
        heads: dict[str, tuple[int, bytes]] = {}
        for rec in loaded.records:
            known = heads.get(rec.envelope.session_id)
            if known is None or known[0] <= rec.chain_index:
                heads[rec.envelope.session_id] = (rec.chain_index + 1, rec.entry_hash)
        for anchor in loaded.anchors:
            for sid, length, head in anchor.heads:
                if heads.get(sid, (0, b""))[0] < length:
                    heads[sid] = (length, head)
        if session not in heads:
            raise AuditUsageError(f"session {session!r} has no records in tenant {tenant!r}")
        bundle = build_bundle(tenant, session, loaded.records, view, heads, loaded.checkpoints,
                              service_verifiers(view), signer, time.time_ns() // 1000)
    path = out or Path(f"{tenant}-{session}.json")
    path.write_text(json.dumps(bundle, indent=1, sort_keys=True))
    emit({"file": str(path), "tenant": tenant, "session": session, "records": len(bundle["records"]),
          "service_key": signer.vkey}, as_json=as_json, title="audit export")


def verify_bundle_cmd(
    file: Path = typer.Argument(..., help="A bundle written by `agenttrail audit export`."),
    service_key: list[str] = typer.Option([], "--service-key", help="Pin the service verifier key (vkey)."),
    as_json: bool = JSON,
) -> None:
    try:
        bundle = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise AuditUsageError(f"cannot read bundle {file}: {exc}") from None
    from agenttrail.processors.service_key import NoteVerifier

    for vkey in service_key:
        try:
            NoteVerifier.from_vkey(vkey)
        except AgentTrailError as exc:
            raise AuditUsageError(f"bad --service-key {vkey[:40]!r}: {exc}") from None
    report = verify_bundle(bundle, service_key)
    show(report, as_json, f"audit verify-bundle {file.name}")
