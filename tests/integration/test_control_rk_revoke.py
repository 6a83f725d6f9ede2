"""Revoking a registration key against the real broker: both callers of a revoke/redeem race learn
the log's verdict, and a restarted process rebuilds the same answer."""

from __future__ import annotations

import uuid

import pytest

from agenttrail import crypto
from agenttrail.config import Settings
from agenttrail.control.credentials import CredentialRejected
from agenttrail.control.records import ControlError
from agenttrail.control.service import Registry


def tid() -> str:
    return f"rkr-{uuid.uuid4().hex[:8]}"


def test_revoke_lands_between_plan_and_write_of_a_redeem(kafka_settings: Settings,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    t = tid()
    with Registry.open(kafka_settings) as admin, Registry.open(kafka_settings) as agent_side:
        admin.create_tenant(t)
        info, secret = admin.create_registration_key(t)
        write = agent_side.write

        def revoke_first(*records, **kw):  # the admin's revoke reaches the log just before the redeem
            admin.revoke_registration_key(info.rk_id)
            return write(*records, **kw)

        monkeypatch.setattr(agent_side, "write", revoke_first)
        with pytest.raises(CredentialRejected) as err:
            agent_side.register_agent(secret, crypto.SigningKey.generate().public_key, "fp", tenant_id=t)
        assert err.value.reason == "revoked"
        assert agent_side.agents(t) == [] and admin.agents(t) == []
        assert [r.status(info.created_at) for r in agent_side.registration_keys(t)] == ["revoked"]
    with Registry.open(kafka_settings) as later:
        assert later.agents(t) == [] and later.registration_keys(t)[0].revoked_at is not None


def test_redeem_lands_between_plan_and_write_of_a_revoke(kafka_settings: Settings,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    t = tid()
    with Registry.open(kafka_settings) as admin, Registry.open(kafka_settings) as agent_side:
        admin.create_tenant(t)
        info, secret = admin.create_registration_key(t)
        write = admin.write
        registered: list[str] = []

        def redeem_first(*records, **kw):  # the agent's redeem reaches the log just before the revoke
            agent_id, _ = agent_side.register_agent(secret, crypto.SigningKey.generate().public_key, "fp")
            registered.append(agent_id)
            return write(*records, **kw)

        monkeypatch.setattr(admin, "write", redeem_first)
        with pytest.raises(ControlError, match=r"redeemed .* before the revocation"):
            admin.revoke_registration_key(info.rk_id, tenant_id=t)
        assert [a.agent_id for a in admin.agents(t)] == registered
        [rk] = admin.registration_keys(t)
        assert (rk.redeemed_by, rk.revoked_at) == (registered[0], None)
    with Registry.open(kafka_settings) as later:
        assert [a.agent_id for a in later.agents(t)] == registered
        assert later.registration_keys(t)[0].status(info.created_at) == "redeemed"
