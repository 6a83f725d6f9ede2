"""`agenttrail fleet`: simulated agents across tenants at a target rate (and `--bench` for the SDK)."""

from __future__ import annotations

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from agenttrail.cli.output import console, emit
from agenttrail.config import load_settings
from agenttrail.errors import ConfigError
from agenttrail.kafka.topics import events_topic, validate_tenant_id


def register(app: typer.Typer) -> None:
    @app.command()
    def fleet(
        tenants: str = typer.Option("demo", help="Comma-separated tenant ids."),
        agents: int = typer.Option(4, min=1, help="Simulated agents per tenant."),
        rate: float = typer.Option(1000.0, min=0, help="Target events/s in total (0: as fast as possible)."),
        duration: float = typer.Option(10.0, min=0.1, help="Seconds to run."),
        seed: int = typer.Option(0, help="Seed of the event mix."),
        register: bool = typer.Option(True, help="Create the tenants and register the agents (control plane)."),
        create_topics: bool = typer.Option(True, help="With --no-register: create the event topics if missing."),
        bench: bool = typer.Option(False, "--bench", help="Measure the SDK instead (sign/s, events/s)."),
        as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    ) -> None:
        """Run a fleet of simulated agents producing signed events (agents registered per run)."""
        from agenttrail.kafka.broker import resolve_bootstrap

        settings = load_settings()
        names = [validate_tenant_id(t.strip()) for t in tenants.split(",") if t.strip()]
        if not names:
            raise ConfigError("--tenants needs at least one tenant id")
        bootstrap = resolve_bootstrap(settings)
        if bench:
            from agenttrail.producers.bench import bench_sdk

            emit(bench_sdk(seconds=duration, bootstrap=bootstrap, tenant_id=names[0],
                           partitions=settings.partitions), as_json=as_json, title="SDK benchmark (one core)")
            return
        from agenttrail.producers.fleet import FleetProgress, dev_agents, run_fleet
        from agenttrail.producers.producer import EventProducer

        if register:
            from agenttrail.control.provision import provision_tenant
            from agenttrail.control.service import Registry

            with console.status("registering the fleet's agents with the control plane…"), \
                    Registry(settings, bootstrap).start() as registry:
                keys = {t: [(a.agent_id, a.key_id, a.key) for a in provision_tenant(registry, t, agents)]
                        for t in names}
        else:  # unregistered dev keys: a verifying worker dead-letters these events (unknown_agent)
            if create_topics:
                from agenttrail.kafka.admin import TopicSpec, ensure_topics

                ensure_topics(bootstrap, [TopicSpec(events_topic(t), settings.partitions) for t in names])
            keys = dev_agents(names, agents)
        producer = EventProducer(bootstrap, spool_path=settings.home / "spool" / "fleet.spool")
        columns = (TextColumn("[bold]fleet"), BarColumn(), TextColumn("{task.description}"),
                   TimeRemainingColumn())
        with Progress(*columns, console=console, transient=as_json, disable=as_json) as bar:
            task = bar.add_task("starting", total=duration)

            def show(p: FleetProgress) -> None:
                rate_now = p.sent / p.elapsed if p.elapsed else 0.0
                bar.update(task, completed=min(p.elapsed, duration), description=(
                    f"sent {p.sent:,}  acked {p.acknowledged:,}  failed {p.failed:,}  "
                    f"spooled {p.spooled:,}  {rate_now:,.0f} ev/s"))

            try:
                report = run_fleet(producer, keys, rate=rate, duration=duration, seed=seed,
                                   max_event_bytes=settings.max_event_bytes, on_progress=show)
            finally:
                left = producer.close(timeout=10)
        summary = {
            "tenants": report.tenants, "agents": report.agents, "sessions": report.sessions,
            "sent": report.sent, "acknowledged": report.acknowledged, "failed": report.failed,
            "spooled": report.spooled, "left_in_spool": left, "seconds": report.seconds,
            "events_per_s": report.events_per_s, "acknowledged_per_s": report.acknowledged_per_s,
        }
        if as_json:
            emit({**summary, "by_type": report.by_type}, as_json=True)
            return
        emit(summary, as_json=False, title="fleet summary")
        emit([{"type": k, "events": v} for k, v in sorted(report.by_type.items())], as_json=False,
             title="events by type")
