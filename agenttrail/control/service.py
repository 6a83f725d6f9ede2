"""Registry: the control-plane operations, on top of RegistryLog (registry_log.py).

Each operation plans its records with the pure functions of commands.py against the local view,
writes them and returns once they are applied locally (read-your-writes); operations whose outcome
the log decides (redeem, registration key revoke, agent key rotation) re-read the view to learn
whether they won. The consumer thread's tick flushes API-key usage.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from agenttrail import crypto
from agenttrail.config import Settings
from agenttrail.control import commands as cmd
from agenttrail.control.credentials import CredentialRejected
from agenttrail.control.records import ApiKeyUsedRecord, ControlError, ServiceKeyRecord
from agenttrail.control.registry_log import RegistryLog, now_micros, registry_topic_spec
from agenttrail.control.view import (
    AgentInfo,
    AgentKeyStatus,
    ApiKeyInfo,
    ApiKeyPrincipal,
    RegistrationKeyInfo,
    ServiceKey,
    Tenant,
)
from agenttrail.errors import BrokerError
from agenttrail.kafka.admin import TopicSpec, alter_topic_config, ensure_topics
from agenttrail.kafka.topics import events_topic, ledger_topic

__all__ = ["Registry", "RegistryLog", "now_micros", "registry_topic_spec", "tenant_topic_specs"]

logger = logging.getLogger(__name__)

DAY_MS = 86_400_000
USAGE_RESOLUTION_MICROS = 60 * 1_000_000  # last-used is kept to the minute: no record per request


def tenant_topic_specs(settings: Settings, tenant_id: str, retention_days: int) -> list[TopicSpec]:
    config = {"retention.ms": str(retention_days * DAY_MS)}
    return [TopicSpec(events_topic(tenant_id), settings.partitions, dict(config)),
            TopicSpec(ledger_topic(tenant_id), settings.partitions, dict(config))]


class Registry(RegistryLog):
    """A process's live copy of the control plane, and the only writer of registry records."""

    def __init__(self, settings: Settings, bootstrap: str, *,
                 clock: Callable[[], int] = now_micros) -> None:
        super().__init__(bootstrap)
        self.settings = settings
        self._clock = clock
        self._usage: dict[str, tuple[str, int]] = {}  # key_id -> (tenant, last used)

    @classmethod
    def open(cls, settings: Settings, timeout: float = 30.0) -> Registry:
        """Connect with the configured bootstrap (or the local broker's) and catch up."""
        from agenttrail.kafka.broker import resolve_bootstrap

        return cls(settings, settings.kafka_bootstrap or resolve_bootstrap(settings)).start(timeout)

    # ---- lifecycle --------------------------------------------------------------------------
    def close(self) -> None:
        if self._producer is not None:
            self.flush_usage()
        super().close()

    def _tick(self) -> None:
        self.flush_usage()

    # ---- tenants ----------------------------------------------------------------------------
    def create_tenant(self, tenant_id: str, retention_days: int | None = None) -> Tenant:
        days = retention_days or self.settings.retention_days
        with self.read() as view:
            record = cmd.plan_tenant(view, tenant_id, days, self._clock())
        ensure_topics(self.bootstrap, tenant_topic_specs(self.settings, tenant_id, days))
        self.write(record)
        return self._tenant(tenant_id)

    def _tenant(self, tenant_id: str) -> Tenant:
        with self.read() as view:
            return cmd.require_tenant(view, tenant_id, active=False)

    def tenant(self, tenant_id: str) -> Tenant | None:
        with self.read() as view:
            return view.tenant(tenant_id)

    def tenants(self) -> list[Tenant]:
        with self.read() as view:
            return view.tenants()

    def set_retention(self, tenant_id: str, retention_days: int) -> Tenant:
        with self.read() as view:
            record = cmd.plan_retention(view, tenant_id, retention_days)
        ms = str(retention_days * DAY_MS)
        for spec in tenant_topic_specs(self.settings, tenant_id, retention_days):
            ensure_topics(self.bootstrap, [spec])
            alter_topic_config(self.bootstrap, spec.name, {"retention.ms": ms})
        self.write(record)
        return self._tenant(tenant_id)

    def set_tenant_status(self, tenant_id: str, status: str) -> tuple[Tenant, bool]:
        """The tenant afterwards, and whether anything was written (False: it had that status)."""
        with self.read() as view:
            record = cmd.plan_tenant_status(view, tenant_id, status, self._clock())
        if record is not None:
            self.write(record)
        return self._tenant(tenant_id), record is not None

    def disable_tenant(self, tenant_id: str) -> Tenant:
        return self.set_tenant_status(tenant_id, "disabled")[0]

    def enable_tenant(self, tenant_id: str) -> Tenant:
        return self.set_tenant_status(tenant_id, "active")[0]

    # ---- API keys ---------------------------------------------------------------------------
    def create_api_key(self, tenant_id: str, scopes: list[str] | tuple[str, ...], *, name: str = "",
                       expires_at: int | None = None) -> tuple[ApiKeyInfo, str]:
        """A new key and its secret: show the secret once, it is stored nowhere."""
        with self.read() as view:
            record, secret = cmd.plan_api_key(view, tenant_id, scopes, self._clock(), name=name,
                                              expires_at=expires_at)
        self.write(record)
        return self._api_key(record.key_id), secret

    def _api_key(self, key_id: str) -> ApiKeyInfo:
        with self.read() as view:
            return cmd.require_api_key(view, key_id)

    def api_keys(self, tenant_id: str) -> list[ApiKeyInfo]:
        with self.read() as view:
            cmd.require_tenant(view, tenant_id, active=False)
            return view.api_keys(tenant_id)

    def rotate_api_key(self, key_id: str, *, grace_seconds: int | None = None,
                       tenant_id: str | None = None) -> tuple[ApiKeyInfo, str]:
        grace = self.settings.key_grace_seconds if grace_seconds is None else grace_seconds
        with self.read() as view:
            new, rotate, secret = cmd.plan_rotate_api_key(view, key_id, self._clock(), grace, tenant_id)
        self.write(new, rotate)  # the new key first: there is never a moment with neither valid
        return self._api_key(new.key_id), secret

    def revoke_api_key(self, key_id: str, *, tenant_id: str | None = None) -> ApiKeyInfo:
        with self.read() as view:
            record = cmd.plan_revoke_api_key(view, key_id, self._clock(), tenant_id)
        self.write(record)
        return self._api_key(key_id)

    def authenticate(self, secret: str) -> ApiKeyPrincipal:
        """The principal of a bearer secret (AuthError otherwise); notes the key as used."""
        now = self._clock()
        with self.read() as view:
            principal = view.authenticate(secret, now)
        self.touch_api_key(principal.key_id, principal.tenant_id, now)
        return principal

    def touch_api_key(self, key_id: str, tenant_id: str, at: int | None = None) -> None:
        """Remember a use; written in batches (at most one record per key and minute)."""
        at = self._clock() if at is None else at
        with self._cond:
            previous = self._usage.get(key_id)
            if previous is None or previous[1] < at:
                self._usage[key_id] = (tenant_id, at)

    def flush_usage(self) -> int:
        with self._cond:
            pending, self._usage = self._usage, {}
            due = []
            for key_id, (tenant_id, at) in pending.items():
                info = self._view.api_key(key_id)
                if info is None:
                    continue
                if info.last_used_at is None or at - info.last_used_at >= USAGE_RESOLUTION_MICROS:
                    due.append(ApiKeyUsedRecord(key_id, tenant_id, at))
        if due and self._producer is not None:
            try:
                self.write(*due, wait=False)
            except BrokerError as exc:
                logger.warning("could not record API key usage: %s", exc)
        return len(due)

    # ---- registration keys and agents -------------------------------------------------------
    def create_registration_key(self, tenant_id: str, *, ttl_seconds: int = 86_400,
                                name: str = "") -> tuple[RegistrationKeyInfo, str]:
        with self.read() as view:
            record, secret = cmd.plan_registration_key(view, tenant_id, ttl_seconds, self._clock(),
                                                       name=name)
        self.write(record)
        return self._registration_key(record.rk_id), secret

    def _registration_key(self, rk_id: str) -> RegistrationKeyInfo:
        with self.read() as view:
            return cmd.require_registration_key(view, rk_id)

    def registration_keys(self, tenant_id: str) -> list[RegistrationKeyInfo]:
        with self.read() as view:
            cmd.require_tenant(view, tenant_id, active=False)
            return view.registration_keys(tenant_id)

    def revoke_registration_key(self, rk_id: str, *,
                                tenant_id: str | None = None) -> tuple[RegistrationKeyInfo, bool]:
        """Revoke an unused key: the key afterwards, and whether anything was written (False: it was
        revoked already). A redeem that reaches the log first wins; then this raises ControlError."""
        self.sync()
        with self.read() as view:
            record = cmd.plan_revoke_registration_key(view, rk_id, self._clock(), tenant_id)
        if record is not None:
            self.write(record)
        info = self._registration_key(rk_id)
        if info.redeemed_by is not None:
            raise ControlError(f"registration key {rk_id} was redeemed (agent {info.redeemed_by}) "
                               "before the revocation reached the log; revoke the agent instead")
        return info, record is not None

    def register_agent(self, rk_secret: str, public_key: bytes, fingerprint: str, *,
                       tenant_id: str | None = None) -> tuple[str, str]:
        """Redeem a single-use ``rk_…`` key: (agent_id, key_id), or CredentialRejected.

        Two concurrent redeems may both be written; the first in the log wins and the other
        caller gets ``CredentialRejected('redeemed')`` (``'revoked'`` when a revocation came first).
        """
        self.sync()
        with self.read() as view:
            record = cmd.plan_redeem(view, rk_secret, public_key, fingerprint, self._clock(),
                                     tenant_id=tenant_id)
        self.write(record)
        with self.read() as view:
            winner = view.redeem_winner(record.rk_id)
            revoked = cmd.require_registration_key(view, record.rk_id).revoked_at is not None
        if revoked:
            raise CredentialRejected("revoked", f"registration key {record.rk_id} has been revoked")
        if winner is None or winner.agent_id != record.agent_id:
            raise CredentialRejected("redeemed", f"registration key {record.rk_id} was already used")
        logger.info("registered agent %s in tenant %s", record.agent_id, record.tenant_id)
        return record.agent_id, record.key_id

    def agent(self, tenant_id: str, agent_id: str) -> AgentInfo:
        with self.read() as view:
            return cmd.require_agent(view, tenant_id, agent_id, active=False)

    def agents(self, tenant_id: str) -> list[AgentInfo]:
        with self.read() as view:
            cmd.require_tenant(view, tenant_id, active=False)
            return view.agents(tenant_id)

    def rotate_agent_key(self, tenant_id: str, agent_id: str, public_key: bytes, *,
                         fingerprint: str | None = None, grace_seconds: int | None = None) -> str:
        """Install a new key (generation + 1); the previous one stays valid for the grace period."""
        grace = self.settings.key_grace_seconds if grace_seconds is None else grace_seconds
        self.sync()
        if fingerprint is not None:
            self.report_fingerprint(tenant_id, agent_id, fingerprint)
        with self.read() as view:
            record = cmd.plan_rotate_agent(view, tenant_id, agent_id, public_key, self._clock(), grace)
        self.write(record)
        info = self.agent(tenant_id, agent_id)
        if info.key_id != record.key_id or info.generation != record.generation:
            raise ControlError(f"a concurrent rotation of agent {agent_id} won; retry")
        return record.key_id

    def revoke_agent(self, tenant_id: str, agent_id: str, reason: str = "") -> AgentInfo:
        with self.read() as view:
            record = cmd.plan_revoke_agent(view, tenant_id, agent_id, self._clock(), reason)
        self.write(record)
        return self.agent(tenant_id, agent_id)

    def report_fingerprint(self, tenant_id: str, agent_id: str, fingerprint: str) -> AgentInfo:
        """Record a machine fingerprint presented by an agent; a second distinct one flags a clone."""
        with self.read() as view:
            record = cmd.plan_fingerprint(view, tenant_id, agent_id, fingerprint, self._clock())
        if record is not None:
            self.write(record)
        info = self.agent(tenant_id, agent_id)
        if info.clone_detected:
            logger.warning("agent %s of tenant %s seen with %d machine fingerprints (clone_detected)",
                           agent_id, tenant_id, len(info.fingerprints))
        return info

    def agent_key(self, tenant_id: str, key_id: str, at_ts_micros: int,
                  agent_id: str | None = None) -> AgentKeyStatus:
        """The verifier's question, answered from the current view (see RegistryView.agent_key)."""
        with self.read() as view:
            return view.agent_key(tenant_id, key_id, at_ts_micros, agent_id)

    # ---- service keys -----------------------------------------------------------------------
    def service_public_keys(self) -> list[ServiceKey]:
        with self.read() as view:
            return view.service_public_keys()

    def publish_service_key(self, service: str, public_key: bytes) -> str:
        """Publish a processor's checkpoint public key (idempotent); returns its key id."""
        key_id = crypto.key_id_for(public_key)
        with self.read() as view:
            if any(k.service == service and k.key_id == key_id for k in view.service_public_keys()):
                return key_id
        self.write(ServiceKeyRecord(service, key_id, public_key, self._clock()))
        return key_id
