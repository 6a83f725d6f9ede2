"""The control plane on the real broker: rebuild after restart, single-use redeem under a race,
revocation and rotation, tenant isolation, and no secret ever in the registry topic."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from agenttrail import crypto
from agenttrail.config import Settings
from agenttrail.control.credentials import CredentialRejected
from agenttrail.control.registration import load_identity, register_agent_locally, rotate_agent_locally
from agenttrail.control.service import Registry
from agenttrail.errors import AuthError, NotFound, TenantError
from agenttrail.kafka.admin import list_topics, topic_config
from agenttrail.kafka.clients import consumer_config
from agenttrail.kafka.topics import REGISTRY_TOPIC, events_topic, ledger_topic


def tid() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


def snapshot(reg: Registry, tenant: str) -> tuple[object, ...]:
    return (reg.tenant(tenant), reg.api_keys(tenant), reg.registration_keys(tenant), reg.agents(tenant))


def registry_bytes(bootstrap: str) -> bytes:
    consumer = Consumer(consumer_config(bootstrap, f"scan-{uuid.uuid4().hex}"))
    consumer.assign([TopicPartition(REGISTRY_TOPIC, 0, OFFSET_BEGINNING)])
    _, high = consumer.get_watermark_offsets(TopicPartition(REGISTRY_TOPIC, 0), timeout=10)
    chunks: list[bytes] = []
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            chunks.append((msg.key() or b"") + b"\x00" + (msg.value() or b""))
            if msg.offset() >= high - 1:
                break
    finally:
        consumer.close()
    return b"\n".join(chunks)


def test_tenant_topics_and_retention(registry: Registry, kafka_bootstrap: str) -> None:
    t = tid()
    tenant = registry.create_tenant(t, retention_days=7)
    assert (tenant.status, tenant.retention_days) == ("active", 7)
    topics = list_topics(kafka_bootstrap)
    assert topics[events_topic(t)] == registry.settings.partitions == topics[ledger_topic(t)]
    assert topic_config(kafka_bootstrap, events_topic(t))["retention.ms"] == str(7 * 86_400_000)
    registry.set_retention(t, 30)
    assert topic_config(kafka_bootstrap, ledger_topic(t))["retention.ms"] == str(30 * 86_400_000)
    assert registry.tenant(t).retention_days == 30
    assert topic_config(kafka_bootstrap, REGISTRY_TOPIC)["cleanup.policy"] == "compact"
    with pytest.raises(TenantError):
        registry.create_tenant(t)
    with pytest.raises(TenantError):
        registry.create_tenant("../etc")
    with pytest.raises(TenantError):
        registry.set_retention(tid(), 5)


def test_restarted_process_rebuilds_the_same_view(kafka_settings: Settings, tmp_path: Path) -> None:
    t = tid()
    with Registry.open(kafka_settings) as first:
        first.create_tenant(t)
        key, _ = first.create_api_key(t, ["events:read"], name="ci")
        first.rotate_api_key(key.key_id, grace_seconds=60)
        other, _ = first.create_api_key(t, ["*"])
        first.revoke_api_key(other.key_id)
        _, rk = first.create_registration_key(t)
        ident = register_agent_locally(kafka_settings, rk, t, tmp_path / "agent.key", registry=first)
        rotate_agent_locally(kafka_settings, tmp_path / "agent.key", registry=first)
        first.report_fingerprint(t, ident.agent_id, "another-machine")
        first.disable_tenant(t)
        before = snapshot(first, t)
    with Registry.open(kafka_settings) as second:
        assert snapshot(second, t) == before
    tenant, keys, rks, agents = before
    assert tenant.status == "disabled" and len(keys) == 3 and rks[0].redeemed_by == ident.agent_id
    assert agents[0].generation == 1 and agents[0].clone_detected


def test_concurrent_redeems_yield_exactly_one_agent(kafka_settings: Settings) -> None:
    t = tid()
    with Registry.open(kafka_settings) as admin:
        admin.create_tenant(t)
        _, rk = admin.create_registration_key(t)
    regs = [Registry.open(kafka_settings) for _ in range(4)]
    barrier = threading.Barrier(len(regs))
    results: list[object] = [None] * len(regs)

    def redeem(i: int) -> None:
        barrier.wait()
        try:
            results[i] = regs[i].register_agent(rk, crypto.SigningKey.generate().public_key, f"fp-{i}")
        except CredentialRejected as exc:
            results[i] = exc

    threads = [threading.Thread(target=redeem, args=(i,)) for i in range(len(regs))]
    try:
        for th in threads:
            th.start()
        for th in threads:
            th.join(60)
        winners = [r for r in results if isinstance(r, tuple)]
        assert len(winners) == 1, results
        assert all(isinstance(r, CredentialRejected) and r.reason == "redeemed"
                   for r in results if not isinstance(r, tuple))
        for reg in regs:
            reg.sync()
            assert [a.agent_id for a in reg.agents(t)] == [winners[0][0]]
    finally:
        for reg in regs:
            reg.close()


def test_revoked_and_rotated_out_keys_fail(registry: Registry, tmp_path: Path) -> None:
    t = tid()
    registry.create_tenant(t)
    key, secret = registry.create_api_key(t, ["events:write"])
    assert registry.authenticate(secret).key_id == key.key_id
    new, new_secret = registry.rotate_api_key(key.key_id, grace_seconds=0)
    time.sleep(0.01)
    with pytest.raises(CredentialRejected) as err:
        registry.authenticate(secret)
    assert err.value.reason == "rotated_out"
    registry.revoke_api_key(new.key_id)
    with pytest.raises(AuthError):
        registry.authenticate(new_secret)

    _, rk = registry.create_registration_key(t)
    ident = register_agent_locally(registry.settings, rk, t, tmp_path / "a.key", registry=registry)
    assert (tmp_path / "a.key").stat().st_mode & 0o777 == 0o600
    now = time.time_ns() // 1000
    with registry.read() as view:
        assert view.agent_key(t, ident.key_id, now, agent_id=ident.agent_id).valid
    rotated = rotate_agent_locally(registry.settings, tmp_path / "a.key", registry=registry, grace_seconds=0)
    assert load_identity(tmp_path / "a.key").key_id == rotated.key_id != ident.key_id
    later = time.time_ns() // 1000 + 1
    with registry.read() as view:
        assert view.agent_key(t, ident.key_id, later, agent_id=ident.agent_id).reason == "key_expired"
        assert view.agent_key(t, rotated.key_id, later, agent_id=ident.agent_id).valid
    registry.revoke_agent(t, ident.agent_id, "test")
    with registry.read() as view:
        assert view.agent_key(t, rotated.key_id, later, agent_id=ident.agent_id).reason == "agent_revoked"
    with pytest.raises(CredentialRejected) as rej:  # a used registration key stays used
        registry.register_agent(rk, crypto.SigningKey.generate().public_key, "fp")
    assert rej.value.reason == "redeemed"


def test_tenant_a_key_never_accepted_for_tenant_b(registry: Registry, tmp_path: Path) -> None:
    a, b = tid(), tid()
    registry.create_tenant(a)
    registry.create_tenant(b)
    key, secret = registry.create_api_key(a, ["*"])
    assert registry.authenticate(secret).tenant_id == a
    with pytest.raises(NotFound):
        registry.revoke_api_key(key.key_id, tenant_id=b)
    assert registry.api_keys(b) == []
    _, rk_a = registry.create_registration_key(a)
    with pytest.raises(CredentialRejected):
        register_agent_locally(registry.settings, rk_a, b, tmp_path / "x.key", registry=registry)
    assert not (tmp_path / "x.key").exists()  # refused: the private key file is removed again
    ident = register_agent_locally(registry.settings, rk_a, a, tmp_path / "y.key", registry=registry)
    with registry.read() as view:
        now = time.time_ns() // 1000
        assert view.agent_key(b, ident.key_id, now).reason == "unknown_key"
        assert view.agent_key(b, ident.key_id, now, agent_id=ident.agent_id).reason == "unknown_agent"
    with pytest.raises(NotFound):
        registry.revoke_agent(b, ident.agent_id)


def test_last_used_is_batched(registry: Registry) -> None:
    t = tid()
    registry.create_tenant(t)
    _key, secret = registry.create_api_key(t, ["*"])
    for _ in range(50):
        registry.authenticate(secret)
    assert registry.flush_usage() == 1  # fifty uses, one record
    assert registry.flush_usage() == 0
    registry.sync()
    assert registry.api_keys(t)[0].last_used_at is not None


def test_secrets_never_in_the_topic_or_logs(registry: Registry, kafka_bootstrap: str, tmp_path: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    t = tid()
    registry.create_tenant(t)
    secrets: list[str] = []
    key, s1 = registry.create_api_key(t, ["*"])
    _, s2 = registry.rotate_api_key(key.key_id)
    _, rk = registry.create_registration_key(t)
    secrets += [s1, s2, rk]
    ident = register_agent_locally(registry.settings, rk, t, tmp_path / "k.key", registry=registry)
    registry.authenticate(s2)
    with pytest.raises(AuthError):
        registry.authenticate(s1[:-1] + ("a" if s1[-1] != "a" else "b"))  # a near-miss is refused without echoing it
    registry.flush_usage()
    registry.sync()
    seed_hex = ident.signing_key().seed.hex()
    blob = registry_bytes(kafka_bootstrap)
    assert t.encode() in blob and ident.agent_id.encode() in blob  # the scan did see our records
    assert ident.agent_id in caplog.text  # the logs did see the registration
    for secret in secrets:
        assert secret.split("_")[-1][10:] not in caplog.text
        assert secret.encode() not in blob
        assert secret.split("_")[-1][10:].encode() not in blob
    assert seed_hex.encode() not in blob and ident.signing_key().seed not in blob
