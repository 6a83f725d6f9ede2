"""RegistryView and the pure planning functions: the decisions the control plane makes."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agenttrail import crypto
from agenttrail.control import commands as cmd
from agenttrail.control.credentials import CredentialRejected
from agenttrail.control.records import ControlError, RedeemRecord, decode_record, encode_record
from agenttrail.control.view import RegistryView
from agenttrail.errors import AuthError, NotFound, TenantError

S = 1_000_000
T0 = 1_700_000_000 * S
GRACE = 3600


def pk() -> bytes:
    return crypto.SigningKey.generate().public_key


def roundtrip(record):  # every record goes through the wire format, as in production
    key, value = encode_record(record)
    return decode_record(value, key)


def apply(view: RegistryView, *records) -> None:
    for r in records:
        view.apply(roundtrip(r))


def view_with(*tenants: str) -> RegistryView:
    view = RegistryView()
    for t in tenants:
        apply(view, cmd.plan_tenant(view, t, 90, T0))
    return view


def register(view: RegistryView, tenant: str, fingerprint: str = "fp-1",
             at: int = T0) -> tuple[str, str, bytes]:
    rk, secret = cmd.plan_registration_key(view, tenant, 3600, at)
    apply(view, rk)
    key = pk()
    redeem = cmd.plan_redeem(view, secret, key, fingerprint, at)
    apply(view, redeem)
    return redeem.agent_id, redeem.key_id, key


# ---- tenants --------------------------------------------------------------------------------
def test_tenant_lifecycle() -> None:
    view = view_with("acme")
    assert view.tenant("acme").status == "active"
    assert view.tenant("acme").retention_days == 90
    apply(view, cmd.plan_retention(view, "acme", 30))
    apply(view, cmd.plan_tenant_status(view, "acme", "disabled", T0 + 1))
    t = view.tenant("acme")
    assert (t.retention_days, t.status, t.created_at) == (30, "disabled", T0)
    assert [x.tenant_id for x in view.tenants()] == ["acme"]


def test_tenant_errors_are_typed() -> None:
    view = view_with("acme")
    with pytest.raises(TenantError):
        cmd.plan_tenant(view, "acme", 90, T0)
    with pytest.raises(TenantError):
        cmd.plan_tenant(view, "Bad/Id", 90, T0)
    with pytest.raises(TenantError):
        cmd.plan_retention(view, "ghost", 10)
    with pytest.raises(ControlError):
        cmd.plan_retention(view, "acme", 0)
    with pytest.raises(TenantError):
        cmd.plan_api_key(view, "ghost", ["*"], T0)


# ---- API keys -------------------------------------------------------------------------------
def test_api_key_authenticates_only_with_its_secret() -> None:
    view = view_with("acme", "beta")
    rec, secret = cmd.plan_api_key(view, "acme", ["events:read", "sessions:read"], T0)
    apply(view, rec)
    principal = view.authenticate(secret, T0 + 1)
    assert (principal.tenant_id, principal.key_id) == ("acme", rec.key_id)
    assert principal.scopes == ("events:read", "sessions:read")
    # same prefix, different tail: unknown, not a crash or a partial match
    forged = secret[:-1] + ("a" if secret[-1] != "a" else "b")
    with pytest.raises(CredentialRejected) as err:
        view.authenticate(forged, T0)
    assert err.value.reason == "unknown"
    for bad in ["", "at_live_", "Bearer x", secret + "a", secret.upper(), "rk_" + secret[8:]]:
        with pytest.raises(AuthError):
            view.authenticate(bad, T0)
    assert view.api_keys("beta") == []
    listed = view.api_keys("acme")
    assert [k.key_id for k in listed] == [rec.key_id]
    assert secret not in repr(listed) and rec.secret_sha256 not in repr(listed)


def test_api_key_rotation_grace_then_rotated_out() -> None:
    view = view_with("acme")
    old, old_secret = cmd.plan_api_key(view, "acme", ["*"], T0)
    apply(view, old)
    new, rotate, new_secret = cmd.plan_rotate_api_key(view, old.key_id, T0 + 10 * S, GRACE)
    apply(view, new, rotate)
    assert new.rotated_from == old.key_id and new.scopes == old.scopes
    assert view.authenticate(old_secret, T0 + 10 * S + GRACE * S).key_id == old.key_id  # last grace µs
    with pytest.raises(CredentialRejected) as err:
        view.authenticate(old_secret, T0 + 10 * S + GRACE * S + 1)
    assert err.value.reason == "rotated_out"
    assert view.authenticate(new_secret, T0 + 100 * GRACE * S).key_id == new.key_id
    with pytest.raises(ControlError):  # a key in grace cannot be rotated again
        cmd.plan_rotate_api_key(view, old.key_id, T0 + 11 * S, GRACE)


def test_revocation_wins_over_grace_and_over_later_records() -> None:
    view = view_with("acme")
    key, secret = cmd.plan_api_key(view, "acme", ["*"], T0)
    apply(view, key)
    new, rotate, _ = cmd.plan_rotate_api_key(view, key.key_id, T0, GRACE)
    apply(view, new, rotate, cmd.plan_revoke_api_key(view, key.key_id, T0 + S))
    with pytest.raises(CredentialRejected) as err:
        view.authenticate(secret, T0 + 2 * S)
    assert err.value.reason == "revoked"
    # replaying the rotation and a usage touch (as after compaction) does not resurrect it
    apply(view, rotate)
    assert view.api_key(key.key_id).status(T0 + 2 * S) == "revoked"


def test_expired_key_and_disabled_tenant_refused() -> None:
    view = view_with("acme")
    key, secret = cmd.plan_api_key(view, "acme", ["*"], T0, expires_at=T0 + S)
    apply(view, key)
    assert view.authenticate(secret, T0).tenant_id == "acme"
    with pytest.raises(CredentialRejected) as err:
        view.authenticate(secret, T0 + S)
    assert err.value.reason == "expired"
    key2, secret2 = cmd.plan_api_key(view, "acme", ["*"], T0)
    apply(view, key2, cmd.plan_tenant_status(view, "acme", "disabled", T0))
    with pytest.raises(CredentialRejected) as err:
        view.authenticate(secret2, T0)
    assert err.value.reason == "tenant_disabled"


def test_scopes_fail_closed() -> None:
    view = view_with("acme")
    with pytest.raises(ControlError):
        cmd.plan_api_key(view, "acme", [], T0)
    with pytest.raises(ControlError):
        cmd.plan_api_key(view, "acme", ["events:read", "admin"], T0)


def test_key_of_another_tenant_cannot_be_managed_through_it() -> None:
    view = view_with("acme", "beta")
    key, _ = cmd.plan_api_key(view, "acme", ["*"], T0)
    apply(view, key)
    with pytest.raises(NotFound):
        cmd.plan_revoke_api_key(view, key.key_id, T0, tenant_id="beta")
    with pytest.raises(NotFound):
        cmd.plan_rotate_api_key(view, key.key_id, T0, GRACE, tenant_id="beta")


# ---- registration keys and agents -----------------------------------------------------------
def test_first_redeem_in_the_log_wins() -> None:
    view = view_with("acme")
    rk, secret = cmd.plan_registration_key(view, "acme", 3600, T0)
    apply(view, rk)
    first = cmd.plan_redeem(view, secret, pk(), "fp-a", T0)
    second = cmd.plan_redeem(view, secret, pk(), "fp-b", T0)  # planned before either is applied
    apply(view, first, second, first)  # redelivery of the winner changes nothing
    assert [a.agent_id for a in view.agents("acme")] == [first.agent_id]
    assert view.redeem_winner(rk.rk_id).agent_id == first.agent_id
    assert view.agent_key("acme", second.key_id, T0).reason == "unknown_key"
    with pytest.raises(CredentialRejected) as err:
        cmd.plan_redeem(view, secret, pk(), "fp-c", T0)
    assert err.value.reason == "redeemed"
    # the same log, compacted (all redeem keys unique, so all kept, in order): same winner
    rebuilt = view_with("acme")
    apply(rebuilt, rk, first, second)
    assert rebuilt.redeem_winner(rk.rk_id).agent_id == first.agent_id
    assert rebuilt.agents("acme") == view.agents("acme")


@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None, max_examples=40)
@given(st.permutations(range(4)))
def test_redeem_winner_is_the_first_in_any_log_order(order: list[int]) -> None:
    view = view_with("acme")
    rk, secret = cmd.plan_registration_key(view, "acme", 3600, T0)
    apply(view, rk)
    redeems = [cmd.plan_redeem(view, secret, pk(), f"fp-{i}", T0) for i in range(4)]
    for i in order:
        apply(view, redeems[i])
    agents = view.agents("acme")
    assert [a.agent_id for a in agents] == [redeems[order[0]].agent_id]


def test_expired_or_foreign_registration_key_refused() -> None:
    view = view_with("acme", "beta")
    rk, secret = cmd.plan_registration_key(view, "acme", 60, T0)
    apply(view, rk)
    with pytest.raises(CredentialRejected) as err:
        cmd.plan_redeem(view, secret, pk(), "fp", T0 + 61 * S)
    assert err.value.reason == "expired"
    with pytest.raises(CredentialRejected) as err:
        cmd.plan_redeem(view, secret, pk(), "fp", T0, tenant_id="beta")
    assert err.value.reason == "wrong_tenant"
    # a late redeem written anyway (clock race) is ignored by the view
    late = RedeemRecord(rk.rk_id, "acme", "ag_late", crypto.key_id_for(pk()), pk(), "fp", T0 + 61 * S)
    apply(view, late)
    assert view.agents("acme") == []
    # a redeem naming another tenant than the key's is ignored too
    apply(view, RedeemRecord(rk.rk_id, "beta", "ag_x", "kx", pk(), "fp", T0))
    assert view.agents("beta") == [] and view.redeem_winner(rk.rk_id) is None


def test_agent_key_status_reasons() -> None:
    view = view_with("acme", "beta")
    agent_id, key_id, public = register(view, "acme")
    ok = view.agent_key("acme", key_id, T0, agent_id=agent_id)
    assert ok.valid and ok.reason is None and ok.public_key == public and ok.generation == 0
    assert view.agent_key("acme", key_id, T0).agent_id == agent_id
    # keys belong to one tenant: the same key id asked for another tenant is unknown
    assert view.agent_key("beta", key_id, T0).reason == "unknown_key"
    assert view.agent_key("beta", key_id, T0, agent_id=agent_id).reason == "unknown_agent"
    assert view.agent_key("acme", "ed25519:ffffffffffffffff", T0, agent_id=agent_id).reason == "unknown_key"
    assert view.agent_key("acme", key_id, T0, agent_id="ag_other").reason == "unknown_agent"
    # another agent's key is not this agent's key
    other_id, other_key, _ = register(view, "acme")
    assert view.agent_key("acme", other_key, T0, agent_id=agent_id).reason == "unknown_key"
    apply(view, cmd.plan_revoke_agent(view, "acme", agent_id, T0 + S))
    for at in (T0 - S, T0 + 2 * S):  # revocation is not dodged by backdating
        st_ = view.agent_key("acme", key_id, at, agent_id=agent_id)
        assert (st_.valid, st_.reason, st_.public_key) == (False, "agent_revoked", None)
    assert view.agent_key("acme", other_key, T0, agent_id=other_id).valid


def test_agent_rotation_generation_and_grace() -> None:
    view = view_with("acme")
    agent_id, key0, _ = register(view, "acme")
    rot1 = cmd.plan_rotate_agent(view, "acme", agent_id, pk(), T0 + 10 * S, GRACE)
    apply(view, rot1)
    end0 = T0 + 10 * S + GRACE * S
    assert view.agent("acme", agent_id).generation == 1
    assert view.agent_key("acme", key0, end0, agent_id=agent_id).valid
    assert view.agent_key("acme", key0, end0 + 1, agent_id=agent_id).reason == "key_expired"
    rot2 = cmd.plan_rotate_agent(view, "acme", agent_id, pk(), T0 + 20 * S, GRACE)
    apply(view, rot2)
    assert view.agent_key("acme", key0, end0 + 1).reason == "key_expired"  # gen 0 keeps its own end
    assert view.agent_key("acme", rot1.key_id, T0 + 20 * S + GRACE * S).valid
    assert view.agent_key("acme", rot2.key_id, T0 + 10**6 * S).generation == 2
    assert view.agent("acme", agent_id).key_id == rot2.key_id


def test_concurrent_rotations_first_wins_and_replay_is_idempotent() -> None:
    view = view_with("acme")
    agent_id, _, _ = register(view, "acme")
    a = cmd.plan_rotate_agent(view, "acme", agent_id, pk(), T0 + S, GRACE)
    b = cmd.plan_rotate_agent(view, "acme", agent_id, pk(), T0 + S, GRACE)
    apply(view, a, b, a)
    info = view.agent("acme", agent_id)
    assert (info.generation, info.key_id) == (1, a.key_id)
    assert view.agent_key("acme", b.key_id, T0).reason == "unknown_key"


def test_clone_detected_on_second_fingerprint() -> None:
    view = view_with("acme")
    agent_id, _, _ = register(view, "acme", fingerprint="machine-1")
    assert cmd.plan_fingerprint(view, "acme", agent_id, "machine-1", T0) is None  # known: no write
    assert not view.agent("acme", agent_id).clone_detected
    apply(view, cmd.plan_fingerprint(view, "acme", agent_id, "machine-2", T0 + S))
    info = view.agent("acme", agent_id)
    assert info.clone_detected and info.fingerprints == ("machine-1", "machine-2")
    assert view.agent_key("acme", info.key_id, T0).clone_detected


def test_registered_public_key_cannot_be_reused() -> None:
    view = view_with("acme")
    _, _, public = register(view, "acme")
    rk, secret = cmd.plan_registration_key(view, "acme", 3600, T0)
    apply(view, rk)
    with pytest.raises(ControlError):
        cmd.plan_redeem(view, secret, public, "fp", T0)


def test_service_keys_accumulate() -> None:
    view = RegistryView()
    k1, k2 = pk(), pk()
    apply(view, cmd_service("processors", k1, T0), cmd_service("processors", k2, T0 + 1))
    assert [k.public_key for k in view.service_public_keys()] == [k1, k2]
    assert view.service_public_key(crypto.key_id_for(k2)) == k2
    assert view.service_public_key("ed25519:0000000000000000") is None


def cmd_service(service: str, key: bytes, at: int):
    from agenttrail.control.records import ServiceKeyRecord

    return ServiceKeyRecord(service, crypto.key_id_for(key), key, at)


@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None, max_examples=25)
@given(st.integers(min_value=0, max_value=3))
def test_secrets_never_in_encoded_records(rotations: int) -> None:
    view = view_with("acme")
    written: list[bytes] = []
    secrets: list[str] = []

    def write(*records) -> None:
        for r in records:
            written.append(b"".join(encode_record(r)))
        apply(view, *records)

    key, secret = cmd.plan_api_key(view, "acme", ["*"], T0)
    write(key)
    secrets.append(secret)
    for i in range(rotations):
        new, rotate, secret = cmd.plan_rotate_api_key(view, key.key_id, T0 + i, GRACE)
        write(new, rotate)
        secrets.append(secret)
        key = new
    rk, rk_secret = cmd.plan_registration_key(view, "acme", 60, T0)
    write(rk)
    write(cmd.plan_redeem(view, rk_secret, pk(), "fp", T0))
    secrets.append(rk_secret)
    blob = b"\n".join(written)
    for secret in secrets:
        scheme_len = secret.index("_", 3) + 1 if secret.startswith("at_") else 3
        body = secret[scheme_len:]
        assert secret.encode() not in blob
        assert body[10:].encode() not in blob  # only the 10-character lookup prefix is public
        assert len(secret) - scheme_len == 52


def test_memoised_answers_follow_every_applied_record() -> None:
    """The verifier asks the same questions per event; answers given before a change must not
    survive it (revocation, a second fingerprint, tenant disabled, rotation)."""
    view = view_with("acme")
    agent, key_id, _ = register(view, "acme")
    first = view.agent_key("acme", key_id, T0, agent)
    assert first.valid and not first.clone_detected
    assert view.agent_key("acme", key_id, T0, agent) is first  # memoised
    apply(view, cmd.plan_fingerprint(view, "acme", agent, "fp-2", T0 + 1))
    assert view.agent_key("acme", key_id, T0, agent).clone_detected
    new_key = pk()
    apply(view, cmd.plan_rotate_agent(view, "acme", agent, new_key, T0 + 3, grace_seconds=10))
    old = view.agent_key("acme", key_id, T0 + 4 * S, agent)
    assert old.valid  # within the grace period
    assert view.agent_key("acme", key_id, T0 + 3 + 11 * S, agent).reason == "key_expired"  # time-dependent
    assert view.agent_key("acme", key_id, T0 + 4 * S, agent).valid
    apply(view, cmd.plan_revoke_agent(view, "acme", agent, T0 + 5))
    assert view.agent_key("acme", key_id, T0, agent).reason == "agent_revoked"
    assert view.tenant("acme").status == "active"
    apply(view, cmd.plan_tenant_status(view, "acme", "disabled", T0 + 6))
    assert view.tenant("acme").status == "disabled"
    assert not view.agent_key("acme", crypto.key_id_for(new_key), T0 + 6, agent).valid
