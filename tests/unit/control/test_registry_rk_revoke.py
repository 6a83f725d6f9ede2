"""Revoking an unused registration key: the plan, the view, and the log-order race with redeems."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agenttrail import crypto
from agenttrail.control import commands as cmd
from agenttrail.control.credentials import CredentialRejected
from agenttrail.control.records import (
    ControlError,
    RegistrationKeyRevokeRecord,
    decode_record,
    encode_record,
)
from agenttrail.control.view import RegistryView
from agenttrail.errors import NotFound

S = 1_000_000
T0 = 1_700_000_000 * S


def pk() -> bytes:
    return crypto.SigningKey.generate().public_key


def apply(view: RegistryView, *records) -> None:
    for r in records:  # through the wire format, as in production
        key, value = encode_record(r)
        view.apply(decode_record(value, key))


def with_key(*tenants: str, ttl: int = 3600):
    view = RegistryView()
    for t in tenants or ("acme",):
        apply(view, cmd.plan_tenant(view, t, 90, T0))
    rk, secret = cmd.plan_registration_key(view, tenants[0] if tenants else "acme", ttl, T0)
    apply(view, rk)
    return view, rk, secret


def test_a_revoked_key_cannot_be_redeemed_and_lists_as_revoked() -> None:
    view, rk, secret = with_key()
    revoke = cmd.plan_revoke_registration_key(view, rk.rk_id, T0 + S)
    assert revoke is not None and (revoke.rk_id, revoke.tenant_id, revoke.at) == (rk.rk_id, "acme", T0 + S)
    apply(view, revoke)
    with pytest.raises(CredentialRejected) as err:
        cmd.plan_redeem(view, secret, pk(), "fp", T0 + 2 * S)
    assert err.value.reason == "revoked" and rk.rk_id in str(err.value)
    [info] = view.registration_keys("acme")
    assert (info.status(T0 + 2 * S), info.revoked_at, info.redeemed_by) == ("revoked", T0 + S, None)
    assert info.status(T0 + 10**6 * S) == "revoked"  # revoked stays revoked, not "expired"
    assert view.registration_key(rk.rk_id) == info


def test_revoking_twice_writes_nothing_the_second_time() -> None:
    view, rk, _ = with_key()
    apply(view, cmd.plan_revoke_registration_key(view, rk.rk_id, T0 + S))
    assert cmd.plan_revoke_registration_key(view, rk.rk_id, T0 + 2 * S) is None
    # a second revoke written anyway (two admins racing) keeps the first one's time
    apply(view, RegistrationKeyRevokeRecord(rk.rk_id, "acme", "rkr_late", T0 + 5 * S))
    assert view.registration_key(rk.rk_id).revoked_at == T0 + S


def test_an_expired_unused_key_can_be_revoked() -> None:
    view, rk, secret = with_key(ttl=60)
    apply(view, cmd.plan_revoke_registration_key(view, rk.rk_id, T0 + 120 * S))
    assert view.registration_key(rk.rk_id).status(T0 + 120 * S) == "revoked"
    with pytest.raises(CredentialRejected) as err:
        cmd.plan_redeem(view, secret, pk(), "fp", T0 + 120 * S)
    assert err.value.reason == "revoked"


def test_unknown_or_foreign_key_is_not_found() -> None:
    view, rk, _ = with_key("acme", "beta")
    for rk_id, tenant in (("rk_nothing", None), ("Bad Id!", None), (rk.rk_id, "beta"), (rk.rk_id, "ghost")):
        with pytest.raises(NotFound, match="unknown registration key"):
            cmd.plan_revoke_registration_key(view, rk_id, T0, tenant_id=tenant)
    assert cmd.plan_revoke_registration_key(view, rk.rk_id, T0, tenant_id="acme") is not None


def test_a_redeemed_key_cannot_be_revoked() -> None:
    view, rk, secret = with_key()
    redeem = cmd.plan_redeem(view, secret, pk(), "fp", T0)
    apply(view, redeem)
    with pytest.raises(ControlError, match="already used") as err:
        cmd.plan_revoke_registration_key(view, rk.rk_id, T0 + S)
    assert redeem.agent_id in str(err.value)


def test_revokes_the_view_cannot_place_are_ignored() -> None:
    view, rk, secret = with_key("acme", "beta")
    apply(view, RegistrationKeyRevokeRecord("rk_unknown", "acme", "rkr_1", T0),  # no such key
          RegistrationKeyRevokeRecord(rk.rk_id, "beta", "rkr_2", T0))  # names another tenant
    assert view.registration_key(rk.rk_id).revoked_at is None
    assert view.registration_key("rk_unknown") is None
    cmd.plan_redeem(view, secret, pk(), "fp", T0)  # still redeemable


# ---- the race: a revoke and a redeem both planned against the same state --------------------
def test_revoke_first_in_the_log_wins() -> None:
    view, rk, secret = with_key()
    redeem = cmd.plan_redeem(view, secret, pk(), "fp", T0 + S)
    revoke = cmd.plan_revoke_registration_key(view, rk.rk_id, T0 + S)
    apply(view, revoke, redeem, redeem)  # redelivery of the loser changes nothing
    assert view.agents("acme") == [] and view.redeem_winner(rk.rk_id) is None
    assert view.agent_key("acme", redeem.key_id, T0 + S).reason == "unknown_key"
    info = view.registration_key(rk.rk_id)
    assert (info.status(T0 + S), info.redeemed_by) == ("revoked", None)


def test_redeem_first_in_the_log_wins() -> None:
    view, rk, secret = with_key()
    redeem = cmd.plan_redeem(view, secret, pk(), "fp", T0 + S)
    revoke = cmd.plan_revoke_registration_key(view, rk.rk_id, T0 + S)
    apply(view, redeem, revoke, revoke)
    assert [a.agent_id for a in view.agents("acme")] == [redeem.agent_id]
    assert view.agent_key("acme", redeem.key_id, T0 + S).valid
    info = view.registration_key(rk.rk_id)
    assert (info.status(T0 + S), info.redeemed_by, info.revoked_at) == ("redeemed", redeem.agent_id, None)


@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None, max_examples=60)
@given(st.permutations(range(4)))
def test_whichever_comes_first_in_any_log_order_decides(order: list[int]) -> None:
    """Two redeems and two revokes (two admins) all planned before any is applied: the first of
    them in the log decides, and rebuilding from the same log (as after compaction: every key is
    unique, so every record stays, in order) gives the same answer."""
    view, rk, secret = with_key()
    racers = [cmd.plan_redeem(view, secret, pk(), "fp-a", T0), cmd.plan_redeem(view, secret, pk(), "fp-b", T0),
              cmd.plan_revoke_registration_key(view, rk.rk_id, T0),
              cmd.plan_revoke_registration_key(view, rk.rk_id, T0)]
    assert len({r.key for r in racers}) == 4
    log = [racers[i] for i in order]
    apply(view, *log)
    first = log[0]
    info = view.registration_key(rk.rk_id)
    if isinstance(first, RegistrationKeyRevokeRecord):
        assert view.agents("acme") == [] and info.status(T0) == "revoked"
    else:
        assert [a.agent_id for a in view.agents("acme")] == [first.agent_id]
        assert info.status(T0) == "redeemed" and info.revoked_at is None
    rebuilt = RegistryView()
    apply(rebuilt, cmd.plan_tenant(rebuilt, "acme", 90, T0), rk, *log)
    assert rebuilt.registration_key(rk.rk_id) == info
    assert rebuilt.agents("acme") == view.agents("acme")
