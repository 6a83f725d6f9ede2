"""`agenttrail demo`: everything embedded, events flowing end to end, then queries and an audit."""

from __future__ import annotations

import shutil
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

import typer
from rich.live import Live
from rich.table import Table

from agenttrail.cli.output import console, emit
from agenttrail.config import load_settings

TENANTS = ("acme", "globex")


def register(app: typer.Typer) -> None:
    app.command("demo", help="Start everything locally, run a fleet, show every stage, audit, stop.")(demo)


def demo(
    duration: float = typer.Option(30.0, min=5, help="Seconds of fleet traffic."),
    rate: float = typer.Option(1500.0, min=10, help="Target events/s of the fleet."),
    agents: int = typer.Option(3, min=1, help="Agents per tenant."),
    keep: bool = typer.Option(False, help="Keep the demo's data directory afterwards."),
) -> None:
    from agenttrail.stack import LocalStack

    base = load_settings()
    home = Path(base.home) / "demo"
    shutil.rmtree(home, ignore_errors=True)
    settings = base.with_overrides(home=home, clickhouse_url=f"chdb:///{home.resolve()}/clickhouse",
                                   lancedb_uri=str(home / "lancedb"), checkpoint_interval_seconds=2.0)
    stack = LocalStack(settings, workers=1, embed=True)
    try:
        with console.status("starting Kafka (KRaft), the worker and the sink+API process…"):
            stack.start()
        console.print(f"[green]up[/green]: Kafka {stack.bootstrap} · API {stack.api_url}")
        keys, agent_keys = _provision(stack, agents)
        bad = _inject_bad_events(stack, agent_keys)
        console.print(f"injected {bad} bad events (forged key, broken signature, garbage bytes): "
                      "they must end in the dead-letter queue")
        report = _run_fleet(stack, keys, agent_keys, duration, rate)
        _drain(stack, keys, report.acknowledged + bad)
        _show_queries(stack, keys)
        ok = _audit(stack, keys)
        _show_try(stack, keys)
    finally:
        with console.status("stopping every process the demo started…"):
            stack.stop()
        if not keep:
            shutil.rmtree(home, ignore_errors=True)
    if not ok:
        raise typer.Exit(1)
    console.print("[bold green]demo finished[/bold green]: every process stopped.")


def _provision(stack: Any, per_tenant: int) -> tuple[dict[str, str], dict[str, list[tuple[str, str, Any]]]]:
    from agenttrail.control.provision import provision_tenant
    from agenttrail.control.service import Registry

    keys: dict[str, str] = {}
    agent_keys: dict[str, list[tuple[str, str, Any]]] = {}
    with Registry(stack.settings, stack.bootstrap).start() as registry:
        for tenant in TENANTS:
            agents = provision_tenant(registry, tenant, per_tenant)
            agent_keys[tenant] = [(a.agent_id, a.key_id, a.key) for a in agents]
            _, secret = registry.create_api_key(tenant, ["*"], name="demo")
            keys[tenant] = secret
    emit([{"tenant": t, "agents": len(agent_keys[t]), "api key": keys[t][:16] + "…"} for t in TENANTS],
         as_json=False, title="tenants, registered agents and API keys")
    return keys, agent_keys


def _landed(stack: Any, keys: dict[str, str]) -> int:
    total = 0
    for tenant in TENANTS:
        try:
            stats = stack.get("/api/stats", keys[tenant])
        except Exception:
            return -1
        total += int(stats.get("events", 0))
    return total


def _stage_table(stack: Any, keys: dict[str, str], produced: int, elapsed: float, title: str = "") -> Table:
    from agenttrail.kafka.admin import group_lag
    from agenttrail.kafka.topics import events_topic
    from agenttrail.processors.chain_worker import GROUP_ID

    stats = stack.worker_stats()
    chained = int(stats.get("agenttrail_chained_total", 0))
    rejected = int(stats.get("agenttrail_rejected_total", 0))
    embedded = int(stats.get("agenttrail_embedded_total", 0))
    landed = _landed(stack, keys)
    lag = group_lag(stack.bootstrap, GROUP_ID, [events_topic(t) for t in TENANTS])
    table = Table(title=title or f"agenttrail live · {elapsed:4.0f}s")
    for col in ("stage", "events", "events/s"):
        table.add_column(col, justify="right" if col != "stage" else "left")
    rows = [("produced (SDK, acked)", produced), ("verified + chained", chained),
            ("dead-lettered", rejected), ("landed in ClickHouse", landed), ("embedded", embedded)]
    for name, value in rows:
        rate = f"{value / elapsed:,.0f}" if elapsed > 0 and value >= 0 else "-"
        table.add_row(name, f"{value:,}" if value >= 0 else "…", rate)
    table.add_row("consumer lag (verify)", f"{lag:,}", "")
    return table


def _run_fleet(stack: Any, keys: dict[str, str], agent_keys: dict[str, list[tuple[str, str, Any]]],
               duration: float, rate: float) -> Any:
    from agenttrail.producers.fleet import FleetProgress, run_fleet
    from agenttrail.producers.producer import EventProducer

    producer = EventProducer(stack.bootstrap, spool_path=stack.home / "spool" / "fleet.spool")
    progress = {"acked": 0}
    result: dict[str, Any] = {}

    def on_progress(p: FleetProgress) -> None:
        progress["acked"] = p.acknowledged

    def drive() -> None:
        try:
            result["report"] = run_fleet(producer, agent_keys, rate=rate, duration=duration, seed=1,
                                         on_progress=on_progress)
        except BaseException as exc:  # surfaced below
            result["error"] = exc

    thread = threading.Thread(target=drive, name="fleet", daemon=True)
    start = time.monotonic()
    thread.start()
    with Live(console=console, refresh_per_second=2) as live:
        while thread.is_alive():
            stack.check_alive()
            live.update(_stage_table(stack, keys, progress["acked"], time.monotonic() - start))
            thread.join(1.0)
        live.update(_stage_table(stack, keys, progress["acked"], time.monotonic() - start))
    producer.close(10)
    if "error" in result:
        raise result["error"]
    report = result["report"]
    console.print(f"fleet: {report.sent:,} events sent, {report.acknowledged:,} acknowledged, "
                  f"{report.failed:,} failed, {report.events_per_s:,.0f} events/s over {report.seconds:.0f}s "
                  f"in {report.sessions:,} sessions")
    return report


def _inject_bad_events(stack: Any, agent_keys: dict[str, list[tuple[str, str, Any]]]) -> int:
    from dataclasses import replace

    from confluent_kafka import Producer

    from agenttrail import crypto
    from agenttrail.kafka.clients import producer_config
    from agenttrail.kafka.topics import events_topic
    from agenttrail.schemas.envelope import build_envelope, encode_envelope

    tenant = TENANTS[0]
    producer = Producer(producer_config(stack.bootstrap))
    forged = build_envelope(key=crypto.SigningKey.generate(), tenant_id=tenant, agent_id=agent_keys[tenant][0][0],
                            session_id="forged-session", seq=0, type="message",
                            payload={"role": "assistant", "text": "I am not who I say I am"})
    agent_id, key_id, key = agent_keys[tenant][0]
    real = build_envelope(key=replace(key, key_id=key_id), tenant_id=tenant, agent_id=agent_id,
                          session_id="tampered-session", seq=0, type="message",
                          payload={"role": "assistant", "text": "original"})
    tampered = replace(real, signature=bytes(64))
    for env in (forged, tampered):
        producer.produce(events_topic(tenant), key=env.session_id.encode(), value=encode_envelope(env))
    producer.produce(events_topic(tenant), key=b"garbage", value=b"\x00not an avro envelope\xff")
    producer.flush(30)
    return 3


def _drain(stack: Any, keys: dict[str, str], expected: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    with console.status("draining: waiting until every acknowledged event is chained or dead-lettered "
                        "and every chained event has landed…"):
        while time.monotonic() < deadline:
            stack.check_alive()
            stats = stack.worker_stats()
            done = stats.get("agenttrail_chained_total", 0) + stats.get("agenttrail_rejected_total", 0)
            if done >= expected and _landed(stack, keys) >= stats.get("agenttrail_chained_total", 0):
                break
            time.sleep(1.0)
    console.print(_stage_table(stack, keys, expected, 0, title="agenttrail · drained: every stage"))


VIEWS = (("llm_cost_per_day", "LLM tokens and cost per day per model",
          ("day", "model", "calls", "total_tokens", "cost_usd", "avg_latency_ms")),
         ("tool_usage_per_hour", "tool usage per hour", ("hour", "tool", "calls", "errors", "avg_latency_ms")),
         ("error_rate_per_agent", "error rate per agent", ("day", "agent_id", "events", "errors", "error_rate")))


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4 if abs(value) < 1 else 2)
    return value


def _show_queries(stack: Any, keys: dict[str, str]) -> None:
    key = keys[TENANTS[0]]
    for view, title, columns in VIEWS:
        try:
            rows = stack.get(f"/api/views/{view}?limit=8", key).get("rows", [])
        except Exception as exc:
            console.print(f"[yellow]{title}: {exc}[/yellow]")
            continue
        shown = [{c: _cell(r.get(c)) for c in columns if c in r} for r in rows]
        if shown:
            emit(shown, as_json=False, title=f"{TENANTS[0]}: {title}  (GET /api/views/{view})")
    query = "the provider is rate limiting our requests"
    try:  # semantic search over the tenant's errors (embedding runs behind chaining, off the hot path)
        hits = stack.get(f"/api/recall?q={urllib.parse.quote(query)}&k=20&type=error", key).get("hits", [])
    except Exception as exc:
        console.print(f"[yellow]recall: {exc}[/yellow]")
        return
    best: dict[str, dict[str, Any]] = {}
    for h in hits:  # the same text is said by many events: show each text once, with its count
        text = str(h.get("text"))[:70]
        entry = best.setdefault(text, {"score": round(float(h.get("score", 0)), 3), "type": h.get("type"),
                                       "text": text, "events": 0})
        entry["events"] += 1
    emit(list(best.values())[:5], as_json=False,
         title=f"{TENANTS[0]}: recall \u201c{query}\u201d among errors (GET /api/recall)")


def _audit(stack: Any, keys: dict[str, str]) -> bool:
    """Run `agenttrail audit verify` for each tenant exactly as an auditor would: over the ledger
    topic, and over ClickHouse through the serving process's API (it owns the embedded store)."""
    import subprocess
    import sys

    ok = True
    for tenant in TENANTS:
        for extra in (["--source", "ledger", "--no-compare"], ["--source", "clickhouse", "--api-key", keys[tenant]]):
            shown = " ".join(extra[:2])
            console.rule(f"agenttrail audit verify --tenant {tenant} {shown}")
            proc = subprocess.run([sys.executable, "-m", "agenttrail.cli", "audit", "verify", "--tenant", tenant,
                                   *extra], env=stack.env(), check=False)
            ok = ok and proc.returncode == 0
            console.print(f"[{'green' if proc.returncode == 0 else 'red'}]audit verify {tenant} {shown}: "
                          f"{'OK' if proc.returncode == 0 else 'FAILED'}[/]")
    return ok


def _show_try(stack: Any, keys: dict[str, str]) -> None:
    key = keys[TENANTS[0]]
    console.print("\nTry the API while it runs (it stops when the demo ends; `--keep` keeps the data):")
    for path in ("/api/sessions?limit=3", "/api/stats", "/api/recall?q=timeout"):
        line = f"  curl -H 'Authorization: Bearer {key}' '{stack.api_url}{path}'"
        console.print(line, highlight=False, soft_wrap=True)
