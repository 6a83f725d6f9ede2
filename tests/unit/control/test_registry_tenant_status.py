"""Disabling and re-enabling a tenant: a record only when the status changes, last write wins."""

from __future__ import annotations

import pytest

from agenttrail import crypto
from agenttrail.control import commands as cmd
from agenttrail.control.credentials import CredentialRejected
from agenttrail.control.records import ControlError, decode_record, encode_record
from agenttrail.control.view import RegistryView
from agenttrail.errors import TenantError

S = 1_000_000
T0 = 1_700_000_000 * S


def apply(view: RegistryView, *records) -> None:
    for r in records:
        key, value = encode_record(r)
        view.apply(decode_record(value, key))


def view_with(*tenants: str) -> RegistryView:
    view = RegistryView()
    for t in tenants:
        apply(view, cmd.plan_tenant(view, t, 90, T0))
    return view


def test_a_record_only_when_the_status_changes() -> None:
    view = view_with("acme")
    assert cmd.plan_tenant_status(view, "acme", "active", T0) is None  # new tenants are active
    off = cmd.plan_tenant_status(view, "acme", "disabled", T0 + S)
    assert off is not None and (off.status, off.at) == ("disabled", T0 + S)
    apply(view, off)
    assert cmd.plan_tenant_status(view, "acme", "disabled", T0 + 2 * S) is None
    on = cmd.plan_tenant_status(view, "acme", "active", T0 + 3 * S)
    assert on is not None and on.key == off.key  # one fact per tenant: compaction keeps the last
    apply(view, on)
    assert view.tenant("acme").status == "active" and view.tenant("acme").active
    assert cmd.plan_tenant_status(view, "acme", "active", T0 + 4 * S) is None


def test_unknown_tenant_bad_id_and_bad_status_are_refused() -> None:
    view = view_with("acme")
    with pytest.raises(TenantError, match="unknown tenant"):
        cmd.plan_tenant_status(view, "ghost", "active", T0)
    with pytest.raises(TenantError):
        cmd.plan_tenant_status(view, "Bad/Id", "disabled", T0)
    with pytest.raises(ControlError, match="unknown tenant status"):
        cmd.plan_tenant_status(view, "acme", "paused", T0)


def test_re_enabled_tenant_works_again_but_revocations_stay() -> None:
    view = view_with("acme")
    key, secret = cmd.plan_api_key(view, "acme", ["*"], T0)
    gone, gone_secret = cmd.plan_api_key(view, "acme", ["*"], T0)
    rk, rk_secret = cmd.plan_registration_key(view, "acme", 3600, T0)
    apply(view, key, gone, rk)
    apply(view, cmd.plan_revoke_api_key(view, gone.key_id, T0))
    apply(view, cmd.plan_tenant_status(view, "acme", "disabled", T0 + S))
    with pytest.raises(CredentialRejected) as err:
        view.authenticate(secret, T0 + S)
    assert err.value.reason == "tenant_disabled"
    with pytest.raises(CredentialRejected) as err:
        cmd.plan_redeem(view, rk_secret, crypto.SigningKey.generate().public_key, "fp", T0 + S)
    assert err.value.reason == "tenant_disabled"
    with pytest.raises(TenantError, match="disabled"):
        cmd.plan_api_key(view, "acme", ["*"], T0 + S)

    apply(view, cmd.plan_tenant_status(view, "acme", "active", T0 + 2 * S))
    assert view.authenticate(secret, T0 + 2 * S).key_id == key.key_id
    with pytest.raises(CredentialRejected) as err:
        view.authenticate(gone_secret, T0 + 2 * S)
    assert err.value.reason == "revoked"
    redeem = cmd.plan_redeem(view, rk_secret, crypto.SigningKey.generate().public_key, "fp", T0 + 2 * S)
    apply(view, redeem)
    assert view.redeem_winner(rk.rk_id) == redeem


def test_last_status_in_the_log_wins_whatever_its_time() -> None:
    """Two admins racing (one enabling, one disabling): the later record in the log decides."""
    view = view_with("acme")
    off = cmd.plan_tenant_status(view, "acme", "disabled", T0 + 5 * S)
    apply(view, off)
    on = cmd.plan_tenant_status(view, "acme", "active", T0 + 9 * S)
    apply(view, on)
    assert view.tenant("acme").active
    again = view_with("acme")
    apply(again, on, off)
    assert again.tenant("acme").status == "disabled"
