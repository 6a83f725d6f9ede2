"""Registry: the I/O shell around RegistryView.

A confluent-kafka producer (acks=all, idempotent) writes records to the compacted single-partition
topic ``agenttrail.registry``; a consumer thread (no consumer-group commits: it assigns the
partition and reads from the beginning) applies them to a local RegistryView. Every writer returns
only after its own record has been applied locally (read-your-writes), and operations whose outcome
the log decides (redeem, agent key rotation) re-read the view to learn whether they won.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

from agenttrail import crypto
from agenttrail.config import Settings
from agenttrail.control import commands as cmd
from agenttrail.control.credentials import CredentialRejected
from agenttrail.control.records import (
    ApiKeyUsedRecord,
    ControlError,
    InvalidRecord,
    Record,
    ServiceKeyRecord,
    decode_record,
    encode_record,
)
from agenttrail.control.view import (
    AgentInfo,
    AgentKeyStatus,
    ApiKeyInfo,
    ApiKeyPrincipal,
    RegistrationKeyInfo,
    RegistryView,
    ServiceKey,
    Tenant,
)
from agenttrail.errors import BrokerError
from agenttrail.kafka.admin import TopicSpec, alter_topic_config, ensure_topics
from agenttrail.kafka.clients import consumer_config, producer_config
from agenttrail.kafka.topics import REGISTRY_TOPIC, events_topic, ledger_topic

logger = logging.getLogger(__name__)

DAY_MS = 86_400_000
USAGE_FLUSH_SECONDS = 30.0
USAGE_RESOLUTION_MICROS = 60 * 1_000_000  # last-used is kept to the minute: no record per request


def now_micros() -> int:
    return time.time_ns() // 1000


def registry_topic_spec() -> TopicSpec:
    """One partition so the log order is total; compacted so it stays small."""
    return TopicSpec(REGISTRY_TOPIC, 1, {"cleanup.policy": "compact", "min.insync.replicas": "1"})


def tenant_topic_specs(settings: Settings, tenant_id: str, retention_days: int) -> list[TopicSpec]:
    config = {"retention.ms": str(retention_days * DAY_MS)}
    return [TopicSpec(events_topic(tenant_id), settings.partitions, dict(config)),
            TopicSpec(ledger_topic(tenant_id), settings.partitions, dict(config))]


class Registry:
    """A process's live copy of the control plane, and the only writer of registry records."""

    def __init__(self, settings: Settings, bootstrap: str, *,
                 clock: Callable[[], int] = now_micros) -> None:
        self.settings = settings
        self.bootstrap = bootstrap
        self._clock = clock
        self._view = RegistryView()
        self._cond = threading.Condition(threading.RLock())
        self._applied = -1  # offset of the last record applied
        self._eof = -1  # high watermark seen at the last end-of-partition
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._producer: Producer | None = None
        self._failure: str | None = None
        self._usage: dict[str, tuple[str, int]] = {}  # key_id -> (tenant, last used)

    @classmethod
    def open(cls, settings: Settings, timeout: float = 30.0) -> Registry:
        """Connect with the configured bootstrap (or the local broker's) and catch up."""
        from agenttrail.kafka.broker import resolve_bootstrap

        return cls(settings, settings.kafka_bootstrap or resolve_bootstrap(settings)).start(timeout)

    # ---- lifecycle --------------------------------------------------------------------------
    def start(self, timeout: float = 30.0) -> Registry:
        ensure_topics(self.bootstrap, [registry_topic_spec()])
        self._producer = Producer(producer_config(self.bootstrap, **{"linger.ms": 0}))
        consumer = Consumer(consumer_config(
            self.bootstrap, f"agenttrail-registry-{uuid.uuid4().hex}",
            **{"enable.partition.eof": True, "isolation.level": "read_uncommitted"}))
        consumer.assign([TopicPartition(REGISTRY_TOPIC, 0, OFFSET_BEGINNING)])
        self._thread = threading.Thread(target=self._run, args=(consumer,), name="registry-view",
                                        daemon=True)
        self._thread.start()
        self.sync(timeout)
        return self

    def close(self) -> None:
        if self._producer is not None:
            self.flush_usage()
            self._producer.flush(10)
            self._producer = None
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, consumer: Consumer) -> None:
        next_flush = time.monotonic() + USAGE_FLUSH_SECONDS
        try:
            while not self._stop.is_set():
                msg = consumer.poll(0.1)
                if time.monotonic() >= next_flush:
                    next_flush = time.monotonic() + USAGE_FLUSH_SECONDS
                    self.flush_usage()
                if msg is None:
                    continue
                if msg.error():
                    if msg.error().code() == KafkaError._PARTITION_EOF:
                        with self._cond:
                            self._eof = msg.offset()
                            self._cond.notify_all()
                    else:
                        logger.warning("registry consumer: %s", msg.error().str())
                    continue
                self._apply(msg.key(), msg.value(), msg.offset())
        except Exception as exc:  # keep the reason; waiters fail instead of hanging
            logger.exception("registry consumer stopped")
            with self._cond:
                self._failure = str(exc)
                self._cond.notify_all()
        finally:
            consumer.close()

    def _apply(self, key: bytes | None, value: bytes | None, offset: int) -> None:
        with self._cond:
            if value is not None:  # a tombstone carries nothing to apply
                try:
                    self._view.apply(decode_record(value, key))
                except InvalidRecord as exc:
                    logger.warning("skipping invalid registry record at offset %d (key %r): %s",
                                   offset, key, exc)
            self._applied = offset
            self._cond.notify_all()

    # ---- read-your-writes -------------------------------------------------------------------
    def wait_for(self, offset: int, timeout: float = 30.0) -> None:
        """Block until the record at ``offset`` (or a later one) has been applied locally."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._applied < offset and self._eof <= offset:
                if self._failure is not None:
                    raise BrokerError(f"registry consumer failed: {self._failure}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BrokerError(f"registry view did not reach offset {offset} within {timeout}s")
                self._cond.wait(left)

    def sync(self, timeout: float = 30.0) -> None:
        """Catch up with everything written to the registry so far (by any process)."""
        probe = Consumer(consumer_config(self.bootstrap, "agenttrail-registry-probe"))
        deadline = time.monotonic() + timeout
        try:
            while True:  # a just-created topic can be unknown to the metadata for a moment
                try:
                    _, high = probe.get_watermark_offsets(TopicPartition(REGISTRY_TOPIC, 0), timeout=timeout)
                    break
                except Exception as exc:
                    if time.monotonic() >= deadline:
                        raise BrokerError(f"cannot read the registry at {self.bootstrap}: {exc}") from None
                    time.sleep(0.2)
        finally:
            probe.close()
        if high > 0:
            self.wait_for(high - 1, timeout)
        else:
            self.wait_for(-1, timeout)

    def write(self, *records: Record, wait: bool = True) -> int:
        """Produce records in order; return the last offset once applied locally (when ``wait``)."""
        if self._producer is None:
            raise BrokerError("the registry is not started")
        offsets: list[int] = []
        errors: list[str] = []

        def delivered(err: KafkaError | None, msg: object) -> None:
            if err is not None:
                errors.append(err.str())
            else:
                offsets.append(msg.offset())  # type: ignore[attr-defined]

        for record in records:
            key, value = encode_record(record)
            self._producer.produce(REGISTRY_TOPIC, value=value, key=key, on_delivery=delivered)
        left = self._producer.flush(30)
        if errors or left or len(offsets) != len(records):
            raise BrokerError(f"registry write failed: {'; '.join(errors) or 'delivery timed out'}")
        last = max(offsets)
        if wait:
            self.wait_for(last)
        return last

    @contextmanager
    def read(self) -> Iterator[RegistryView]:
        """The view, held still while the caller reads it."""
        with self._cond:
            yield self._view

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
