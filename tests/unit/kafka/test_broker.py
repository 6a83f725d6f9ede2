"""The local broker's failure modes: one-line causes, bounded waits, nothing left running."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from agenttrail.errors import BrokerError, TenantError
from agenttrail.kafka import broker as broker_mod
from agenttrail.kafka.broker import LocalBroker, free_port, port_is_free
from agenttrail.kafka.topics import events_topic, ledger_topic, tenant_of_topic, validate_tenant_id


def test_port_taken_is_a_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(broker_mod, "ensure_jars", lambda libs=None: tmp_path)  # no JVM needed
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        assert not port_is_free(port)
        with pytest.raises(BrokerError) as err:
            LocalBroker(tmp_path / "k", port=port, controller_port=free_port()).start()
    message = str(err.value)
    assert f"port {port}" in message and "in use" in message and "\n" not in message


def test_no_java_is_a_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(broker_mod.shutil, "which", lambda name: None)
    with pytest.raises(BrokerError) as err:
        LocalBroker(tmp_path / "k").start()
    assert "Java" in str(err.value) and "\n" not in str(err.value)


def test_stop_without_a_broker_says_nothing_ran(tmp_path: Path) -> None:
    assert LocalBroker(tmp_path / "k").stop() is False
    assert LocalBroker(tmp_path / "k").state() is None


def test_stale_pid_file_is_not_trusted(tmp_path: Path) -> None:
    """A PID file whose process is not our JVM (here: this test process) is ignored and removed."""
    import json
    import os

    home = tmp_path / "k"
    home.mkdir()
    b = LocalBroker(home)
    b.state_path.write_text(json.dumps({"pid": os.getpid(), "port": 1, "controller_port": 2, "home": str(home),
                                        "started_at": 0.0, "start_seconds": 0.0}))
    assert b.state() is None
    assert not b.state_path.exists()
    assert b.stop() is False  # and this process was not signalled


@pytest.mark.parametrize("bad", ["", "Acme", "a" * 64, "-x", "a.b", "a/b", "a b", "ä", None, 7])
def test_tenant_ids_are_checked_before_any_topic_name(bad: object) -> None:
    with pytest.raises(TenantError):
        validate_tenant_id(bad)
    with pytest.raises(TenantError):
        events_topic(bad)  # type: ignore[arg-type]


def test_topic_names_round_trip() -> None:
    assert tenant_of_topic(events_topic("acme-1")) == "acme-1"
    assert tenant_of_topic(ledger_topic("a_b")) == "a_b"
    assert tenant_of_topic("agenttrail.dlq") is None
    assert tenant_of_topic("agenttrail.acme.events.x") is None


def test_cluster_ids_never_look_like_an_option() -> None:
    ids = [broker_mod._cluster_id() for _ in range(3000)]
    assert not any(i.startswith("-") for i in ids)
    assert all(len(i) == 22 for i in ids) and len(set(ids)) == len(ids)
