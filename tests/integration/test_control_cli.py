"""The control-plane CLI against the real broker: --json for scripts, secrets shown once only,
one-line errors for bad ids and unknown tenants."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from agenttrail.cli import main


@pytest.fixture()
def cli(kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AGENTTRAIL_KAFKA_BOOTSTRAP", kafka_bootstrap)
    monkeypatch.setenv("AGENTTRAIL_HOME", str(tmp_path / ".agenttrail"))
    outputs: list[str] = []

    def run(*args: str, code: int = 0) -> str:
        rc = main(list(args))
        captured = capsys.readouterr()
        assert rc == code, (args, captured.out, captured.err)
        outputs.append(captured.out + captured.err)
        return captured.out if code == 0 else captured.err

    run.outputs = outputs  # type: ignore[attr-defined]
    return run


def test_cli_flow_json_and_secrets_shown_once(cli, tmp_path: Path) -> None:
    t = f"cli-{uuid.uuid4().hex[:8]}"
    created = json.loads(cli("tenants", "create", t, "--retention-days", "14", "--json"))
    assert created["tenant_id"] == t and created["retention_days"] == 14
    key = json.loads(cli("keys", "create", "-t", t, "-s", "events:read", "-s", "sessions:read", "--json"))
    secret = key["secret"]
    assert secret.startswith("at_live_")
    rotated = json.loads(cli("keys", "rotate", key["key_id"], "--json"))
    rk = json.loads(cli("registration-keys", "create", "-t", t, "--json"))
    assert rk["secret"].startswith("rk_")
    agent = json.loads(cli("agents", "register", "-t", t, "-k", rk["secret"],
                           "--key-file", str(tmp_path / "agent.key"), "--json"))
    assert (tmp_path / "agent.key").stat().st_mode & 0o777 == 0o600
    rot = json.loads(cli("agents", "rotate", "--key-file", str(tmp_path / "agent.key"), "--json"))
    assert rot["generation"] == 1 and rot["key_id"] != agent["key_id"]

    listings = [
        cli("tenants", "list", "--json"), cli("tenants", "show", t, "--json"),
        cli("keys", "list", "-t", t, "--json"), cli("registration-keys", "list", "-t", t, "--json"),
        cli("agents", "list", "-t", t, "--json"),
        cli("keys", "list", "-t", t), cli("agents", "list", "-t", t),
    ]
    keys = json.loads(listings[2])
    assert {k["key_id"]: k["status"] for k in keys} == {key["key_id"]: "grace", rotated["key_id"]: "active"}
    assert json.loads(listings[3])[0]["redeemed_by"] == agent["agent_id"]
    assert json.loads(listings[1])["agents"] == 1
    for text in listings:
        for s in (secret, rotated["secret"], rk["secret"]):
            assert s not in text
            assert s.split("_")[-1][10:] not in text
        assert "sha256" not in text

    revoked = json.loads(cli("agents", "revoke", agent["agent_id"], "-t", t, "--json"))
    assert revoked["status"] == "revoked"
    assert json.loads(cli("keys", "revoke", rotated["key_id"], "--json"))["status"] == "revoked"
    disabled = json.loads(cli("tenants", "disable", t, "--json"))
    assert disabled["status"] == "disabled"


def test_cli_errors_are_one_line(cli) -> None:
    for args in (("tenants", "create", "Bad Tenant!"), ("tenants", "show", "nobody-here"),
                 ("keys", "list", "-t", "nobody-here"), ("keys", "revoke", "ak_nothing"),
                 ("agents", "register", "-t", "nobody-here", "-k", "rk_bogus", "--key-file", "k")):
        err = cli(*args, code=2)
        # one message (rich may soft-wrap it at the console width), never a traceback
        assert err.startswith("error:") and err.count("error:") == 1 and "Traceback" not in err, err
    t = f"cli-{uuid.uuid4().hex[:8]}"
    cli("tenants", "create", t)
    err = cli("keys", "create", "-t", t, "-s", "root", code=2)
    assert "unknown scopes" in err


def test_cli_registration_key_revoke(cli, tmp_path: Path) -> None:
    t = f"cli-{uuid.uuid4().hex[:8]}"
    cli("tenants", "create", t)
    rk = json.loads(cli("registration-keys", "create", "-t", t, "--json"))
    revoked = json.loads(cli("registration-keys", "revoke", rk["rk_id"], "-t", t, "--json"))
    assert (revoked["status"], revoked["changed"]) == ("revoked", True) and revoked["revoked_at"]
    assert rk["secret"] not in cli.outputs[-1]  # type: ignore[attr-defined]
    assert "already revoked; nothing changed" in cli("registration-keys", "revoke", rk["rk_id"])
    assert json.loads(cli("registration-keys", "revoke", rk["rk_id"], "--json"))["changed"] is False
    [listed] = json.loads(cli("registration-keys", "list", "-t", t, "--json"))
    assert (listed["rk_id"], listed["status"], listed["redeemed_by"]) == (rk["rk_id"], "revoked", None)
    assert "revoked" in cli("registration-keys", "list", "-t", t)

    # redeeming it now fails like a used or expired key does: one line, the reason, no key file left
    err = cli("agents", "register", "-t", t, "-k", rk["secret"], "--key-file", str(tmp_path / "a.key"), code=2)
    assert err.startswith("error:") and "revoked" in err and "Traceback" not in err, err
    assert not (tmp_path / "a.key").exists()

    used = json.loads(cli("registration-keys", "create", "-t", t, "--json"))
    agent = json.loads(cli("agents", "register", "-t", t, "-k", used["secret"],
                           "--key-file", str(tmp_path / "b.key"), "--json"))
    err = cli("registration-keys", "revoke", used["rk_id"], code=2)
    assert "already used" in err and agent["agent_id"] in err, err
    for args in (("registration-keys", "revoke", "rk_nothing"),
                 ("registration-keys", "revoke", used["rk_id"], "-t", "some-other-tenant"),
                 ("registration-keys", "revoke", "Bad Id!")):
        err = cli(*args, code=2)
        assert err.startswith("error:") and "unknown registration key" in err and "Traceback" not in err, err


def test_cli_tenant_disable_and_enable(cli) -> None:
    t = f"cli-{uuid.uuid4().hex[:8]}"
    cli("tenants", "create", t)
    assert f"tenant '{t}' is already active; nothing changed" in cli("tenants", "enable", t)
    off = json.loads(cli("tenants", "disable", t, "--json"))
    assert (off["status"], off["changed"]) == ("disabled", True)
    assert "already disabled; nothing changed" in cli("tenants", "disable", t)
    assert json.loads(cli("tenants", "disable", t, "--json"))["changed"] is False
    err = cli("keys", "create", "-t", t, "-s", "*", code=2)
    assert "disabled" in err
    assert "active" in cli("tenants", "enable", t)  # the table of the re-enabled tenant
    assert json.loads(cli("tenants", "show", t, "--json"))["status"] == "active"
    key = json.loads(cli("keys", "create", "-t", t, "-s", "*", "--json"))
    assert key["status"] == "active"
    for verb in ("enable", "disable"):
        for bad in ("nobody-here", "Bad Tenant!"):
            err = cli("tenants", verb, bad, code=2)
            assert err.startswith("error:") and err.count("error:") == 1 and "Traceback" not in err, err
        assert "unknown tenant" in cli("tenants", verb, "nobody-here", code=2)
