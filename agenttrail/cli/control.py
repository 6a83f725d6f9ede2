"""`agenttrail tenants|keys|registration-keys|agents …`: the control plane from the command line.

Secrets (API keys, registration keys) are printed once, by the command that creates them; no
list command prints a secret or a hash.
"""

from __future__ import annotations

import base64
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer

from agenttrail.cli.output import console, emit
from agenttrail.config import Settings, load_settings
from agenttrail.control.registration import register_agent_locally, rotate_agent_locally
from agenttrail.control.service import Registry, now_micros
from agenttrail.control.view import AgentInfo, ApiKeyInfo, RegistrationKeyInfo, Tenant
from agenttrail.errors import ConfigError, TenantError
from agenttrail.kafka.topics import validate_tenant_id

JSON = typer.Option(False, "--json", help="Machine-readable output.")
TENANT = typer.Option(..., "--tenant", "-t", help="Tenant id.")
OPT_TENANT = typer.Option(None, "--tenant", "-t", help="Refuse unless the key belongs to this tenant.")
SCOPES = typer.Option(..., "--scope", "-s", help="Repeat for several: *, events:read, events:write, …")
NEW_KEY_FILE = typer.Option(..., help="Where to write the private key (0600).")
KEY_FILE = typer.Option(..., help="The agent's private key file.")


def _time(micros: int | None) -> str | None:
    if micros is None:
        return None
    return datetime.fromtimestamp(micros / 1e6, tz=UTC).isoformat(timespec="seconds")


@contextmanager
def _registry() -> Iterator[Registry]:
    registry = Registry.open(load_settings())
    try:
        yield registry
    finally:
        registry.close()


def tenant_row(t: Tenant) -> dict[str, Any]:
    return {"tenant_id": t.tenant_id, "status": t.status, "retention_days": t.retention_days,
            "created_at": _time(t.created_at)}


def api_key_row(k: ApiKeyInfo, now: int) -> dict[str, Any]:
    return {"key_id": k.key_id, "tenant_id": k.tenant_id, "prefix": f"at_live_{k.prefix}…",
            "name": k.name, "scopes": list(k.scopes), "status": k.status(now),
            "created_at": _time(k.created_at), "expires_at": _time(k.expires_at),
            "valid_until": _time(k.valid_until), "rotated_from": k.rotated_from,
            "rotated_to": k.rotated_to, "last_used_at": _time(k.last_used_at)}


def rk_row(r: RegistrationKeyInfo, now: int) -> dict[str, Any]:
    return {"rk_id": r.rk_id, "tenant_id": r.tenant_id, "prefix": f"rk_{r.prefix}…", "name": r.name,
            "status": r.status(now), "created_at": _time(r.created_at),
            "expires_at": _time(r.expires_at), "redeemed_by": r.redeemed_by,
            "revoked_at": _time(r.revoked_at)}


def agent_row(a: AgentInfo) -> dict[str, Any]:
    return {"agent_id": a.agent_id, "tenant_id": a.tenant_id, "status": a.status, "key_id": a.key_id,
            "generation": a.generation, "public_key": base64.b64encode(a.public_key).decode(),
            "clone_detected": a.clone_detected, "fingerprints": len(a.fingerprints),
            "registered_at": _time(a.registered_at), "revoked_at": _time(a.revoked_at)}


def _show_secret(row: dict[str, Any], secret: str, as_json: bool, title: str) -> None:
    emit({**row, "secret": secret}, as_json=as_json, title=title)
    if not as_json:
        console.print("[yellow]Store the secret now: it is shown once and kept nowhere.[/yellow]")


def _show_change(row: dict[str, Any], changed: bool, as_json: bool, title: str, unchanged: str) -> None:
    """The row after a state change; a one-line note instead when there was nothing to change."""
    if as_json:
        emit({**row, "changed": changed}, as_json=True)
    elif changed:
        emit(row, as_json=False, title=title)
    else:
        console.print(f"{unchanged}; nothing changed.")


tenants = typer.Typer(help="Tenants: their topics, retention and status.", no_args_is_help=True)
keys = typer.Typer(help="API keys (at_live_…) of a tenant.", no_args_is_help=True)
rks = typer.Typer(help="Single-use registration keys (rk_…) for agents.", no_args_is_help=True)
agents = typer.Typer(help="Agent identities: register, list, rotate, revoke.", no_args_is_help=True)


@tenants.command("create")
def tenants_create(tenant_id: str, retention_days: int = typer.Option(None, help="Default: settings."),
                   as_json: bool = JSON) -> None:
    """Create a tenant and its events/ledger topics (and, with a ClickHouse server, its analyst user)."""
    validate_tenant_id(tenant_id)  # a bad id is refused before anything is contacted
    with _registry() as reg:
        row = tenant_row(reg.create_tenant(tenant_id, retention_days))
        row.update(_analyst_user(reg.settings, tenant_id))
        emit(row, as_json=as_json, title="tenant")


def _analyst_user(settings: Settings, tenant_id: str) -> dict[str, str]:
    """Server mode: a read-only ClickHouse user whose row policy shows only this tenant (the
    password is shown once). Embedded chDB has no users or row policies: nothing to do."""
    if not settings.clickhouse_url.startswith(("http://", "https://")):
        return {}
    import secrets

    from agenttrail.sinks.clickhouse.analysts import create_analyst_user
    from agenttrail.sinks.clickhouse.schema import open_store

    password = secrets.token_urlsafe(24)
    store = open_store(settings.clickhouse_url)
    try:
        user = create_analyst_user(store, tenant_id, password)
    finally:
        store.close()
    return {"analyst_user": user, "analyst_password (shown once)": password}


@tenants.command("list")
def tenants_list(as_json: bool = JSON) -> None:
    with _registry() as reg:
        emit([tenant_row(t) for t in reg.tenants()], as_json=as_json, title="tenants",
             columns=["tenant_id", "status", "retention_days", "created_at"])


@tenants.command("show")
def tenants_show(tenant_id: str, as_json: bool = JSON) -> None:
    with _registry() as reg:
        tenant = reg.tenant(validate_tenant_id(tenant_id))
        if tenant is None:
            raise TenantError(f"unknown tenant {tenant_id!r}")
        row = tenant_row(tenant)
        row["api_keys"] = len(reg.api_keys(tenant_id))
        row["agents"] = len(reg.agents(tenant_id))
        emit(row, as_json=as_json, title=tenant_id)


@tenants.command("set-retention")
def tenants_set_retention(tenant_id: str, days: int, as_json: bool = JSON) -> None:
    """Change the retention policy (and the topics' retention.ms)."""
    with _registry() as reg:
        emit(tenant_row(reg.set_retention(tenant_id, days)), as_json=as_json, title="tenant")


@tenants.command("disable")
def tenants_disable(tenant_id: str, as_json: bool = JSON) -> None:
    """Disable a tenant: its API keys stop authenticating, its registration keys cannot be redeemed
    and its agents' events are dead-lettered (tenant_disabled). `tenants enable` undoes it."""
    _set_status(tenant_id, "disabled", as_json)


@tenants.command("enable")
def tenants_enable(tenant_id: str, as_json: bool = JSON) -> None:
    """Re-enable a disabled tenant; revoked keys and agents stay revoked."""
    _set_status(tenant_id, "active", as_json)


def _set_status(tenant_id: str, status: str, as_json: bool) -> None:
    validate_tenant_id(tenant_id)
    with _registry() as reg:
        tenant, changed = reg.set_tenant_status(tenant_id, status)
        _show_change(tenant_row(tenant), changed, as_json, "tenant",
                     f"tenant {tenant_id!r} is already {status}")


@keys.command("create")
def keys_create(tenant: str = TENANT,
                scope: list[str] = SCOPES,
                name: str = typer.Option("", help="A label."),
                expires_in_days: int = typer.Option(None, help="Default: never."),
                as_json: bool = JSON) -> None:
    """Create an API key; its secret is printed once."""
    now = now_micros()
    expires = now + expires_in_days * 86_400_000_000 if expires_in_days else None
    with _registry() as reg:
        info, secret = reg.create_api_key(tenant, scope, name=name, expires_at=expires)
        _show_secret(api_key_row(info, now), secret, as_json, "API key")


@keys.command("list")
def keys_list(tenant: str = TENANT, as_json: bool = JSON) -> None:
    now = now_micros()
    with _registry() as reg:
        emit([api_key_row(k, now) for k in reg.api_keys(tenant)], as_json=as_json, title="API keys",
             columns=["key_id", "prefix", "name", "scopes", "status", "created_at", "valid_until",
                      "last_used_at"])


@keys.command("rotate")
def keys_rotate(key_id: str, tenant: str = OPT_TENANT,
                grace_seconds: int = typer.Option(None, help="Default: settings (24 h)."),
                as_json: bool = JSON) -> None:
    """Replace a key; the old one keeps working for the grace period."""
    with _registry() as reg:
        info, secret = reg.rotate_api_key(key_id, grace_seconds=grace_seconds, tenant_id=tenant)
        _show_secret(api_key_row(info, now_micros()), secret, as_json, "new API key")


@keys.command("revoke")
def keys_revoke(key_id: str, tenant: str = OPT_TENANT, as_json: bool = JSON) -> None:
    with _registry() as reg:
        emit(api_key_row(reg.revoke_api_key(key_id, tenant_id=tenant), now_micros()), as_json=as_json,
             title="API key")


@rks.command("create")
def rks_create(tenant: str = TENANT, ttl_hours: float = typer.Option(24.0, help="Lifetime."),
               name: str = typer.Option("", help="A label."), as_json: bool = JSON) -> None:
    """Create a single-use registration key; its secret is printed once."""
    if ttl_hours <= 0:
        raise ConfigError("--ttl-hours must be positive")
    with _registry() as reg:
        info, secret = reg.create_registration_key(tenant, ttl_seconds=int(ttl_hours * 3600), name=name)
        _show_secret(rk_row(info, now_micros()), secret, as_json, "registration key")


@rks.command("list")
def rks_list(tenant: str = TENANT, as_json: bool = JSON) -> None:
    now = now_micros()
    with _registry() as reg:
        emit([rk_row(r, now) for r in reg.registration_keys(tenant)], as_json=as_json,
             title="registration keys", columns=["rk_id", "prefix", "name", "status", "created_at",
                                                 "expires_at", "redeemed_by", "revoked_at"])


@rks.command("revoke")
def rks_revoke(rk_id: str, tenant: str = OPT_TENANT, as_json: bool = JSON) -> None:
    """Revoke an unused registration key: it can no longer register an agent."""
    with _registry() as reg:
        info, changed = reg.revoke_registration_key(rk_id, tenant_id=tenant)
        _show_change(rk_row(info, now_micros()), changed, as_json, "registration key",
                     f"registration key {rk_id} is already revoked")


@agents.command("register")
def agents_register(tenant: str = TENANT,
                    registration_key: str = typer.Option(..., "--registration-key", "-k",
                                                         help="rk_… secret, or - to read it from stdin."),
                    key_file: Path = NEW_KEY_FILE,
                    fingerprint: str = typer.Option(None, help="Default: this machine's."),
                    as_json: bool = JSON) -> None:
    """Generate a keypair here and register its public key with a registration key."""
    secret = sys.stdin.readline().strip() if registration_key == "-" else registration_key
    with _registry() as reg:
        ident = register_agent_locally(reg.settings, secret, tenant, key_file, fingerprint=fingerprint,
                                       registry=reg)
        emit(agent_row(reg.agent(tenant, ident.agent_id)) | {"key_file": str(key_file)}, as_json=as_json,
             title="agent")


@agents.command("list")
def agents_list(tenant: str = TENANT, as_json: bool = JSON) -> None:
    with _registry() as reg:
        emit([agent_row(a) for a in reg.agents(tenant)], as_json=as_json, title="agents",
             columns=["agent_id", "status", "key_id", "generation", "clone_detected", "registered_at"])


@agents.command("rotate")
def agents_rotate(key_file: Path = KEY_FILE,
                  grace_seconds: int = typer.Option(None, help="Default: settings (24 h)."),
                  as_json: bool = JSON) -> None:
    """Give the agent of KEY_FILE a new keypair (next generation); the old key keeps a grace period."""
    with _registry() as reg:
        ident = rotate_agent_locally(reg.settings, key_file, registry=reg, grace_seconds=grace_seconds)
        emit(agent_row(reg.agent(ident.tenant_id, ident.agent_id)), as_json=as_json, title="agent")


@agents.command("revoke")
def agents_revoke(agent_id: str, tenant: str = TENANT, reason: str = typer.Option("", help="Why."),
                  as_json: bool = JSON) -> None:
    with _registry() as reg:
        emit(agent_row(reg.revoke_agent(tenant, agent_id, reason)), as_json=as_json, title="agent")


def register(app: typer.Typer) -> None:
    app.add_typer(tenants, name="tenants")
    app.add_typer(keys, name="keys")
    app.add_typer(rks, name="registration-keys")
    app.add_typer(agents, name="agents")
