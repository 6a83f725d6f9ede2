"""`agenttrail audit verify-bundle` exit codes: 0 verified, 1 verification failure, 2 usage error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agenttrail.audit.bench import synthetic_dataset
from agenttrail.audit.bundle import build_bundle
from agenttrail.cli import main


def run(argv: list[str]) -> int:
    """main()'s return code, or the code of the SystemExit a verification failure raises."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


@pytest.fixture(scope="module")
def bundle() -> dict:
    data = synthetic_dataset(120, tenant_id="cli", sessions=3, agents=1)
    return build_bundle("cli", "s-00001", data.records, data.keys, data.heads(), [data.checkpoint],
                        [data.service_key.verifier], data.service_key, 7)


def test_verify_bundle_exit_codes(tmp_path: Path, bundle: dict, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps(bundle))
    assert run(["audit", "verify-bundle", str(good), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is True and out["events"] == 40

    bad = json.loads(json.dumps(bundle))
    bad["records"][3]["ts"] += 1
    tampered = tmp_path / "bad.json"
    tampered.write_text(json.dumps(bad))
    assert run(["audit", "verify-bundle", str(tampered)]) == 1
    assert "s-00001" in capsys.readouterr().out

    assert run(["audit", "verify-bundle", str(tmp_path / "missing.json")]) == 2
    assert run(["audit", "verify-bundle", str(good), "--service-key", "garbage"]) == 2


def test_verify_through_the_api_when_serve_owns_the_store() -> None:
    import http.server
    import threading

    from agenttrail.audit.bench import synthetic_dataset
    from agenttrail.audit.verify import verify_records
    from agenttrail.cli.audit import AuditUsageError, _via_api
    from agenttrail.config import Settings

    data = synthetic_dataset(50, tenant_id="cli", sessions=2, agents=1)
    records = [r for r in data.records if not (r.envelope.session_id == "s-00001" and r.chain_index == 3)]
    served = verify_records(records, data.keys, tenant_id="cli").to_json()
    seen: list[tuple[str, str | None]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append((self.path, self.headers.get("Authorization")))
            body = json.dumps(served).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        settings = Settings(api_port=server.server_address[1])
        report = _via_api(settings, "s-00001", "at_live_x")
        assert seen == [("/api/audit/verify?session=s-00001", "Bearer at_live_x")]
        assert not report.ok
        [f] = report.failures
        assert (f.check, f.kind, f.session_id, f.chain_index) == ("chain", "index_gap", "s-00001", 4)
        with pytest.raises(AuditUsageError):
            _via_api(settings, None, None)
    finally:
        server.shutdown()


def test_progress_display_starts_no_thread() -> None:
    """`audit verify` forks its workers only from a single-threaded process: the bar must not add one."""
    import threading

    from agenttrail.cli.audit import _progress

    before = threading.active_count()
    with _progress("verifying", 10, True) as tick:
        tick(4)
        tick(6)
        assert threading.active_count() == before


@pytest.fixture
def ledger(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """`audit verify` over a synthetic ledger (no broker, no registry); every process that checks
    sessions leaves a file named by its pid in the returned directory."""
    import os
    from collections.abc import Iterator
    from contextlib import contextmanager

    from agenttrail.audit import parallel, verify
    from agenttrail.audit.sources import Loaded
    from agenttrail.cli import audit as cli_audit

    data = synthetic_dataset(600, tenant_id="cli", sessions=6, agents=1)
    check = verify.verify_sessions

    def marked(*args: object, **kw: object) -> object:
        (tmp_path / str(os.getpid())).touch()
        return check(*args, **kw)  # type: ignore[arg-type]

    @contextmanager
    def view(_settings: object) -> Iterator[object]:
        yield data.keys

    monkeypatch.setattr(verify, "verify_sessions", marked)
    monkeypatch.setattr(parallel, "PARALLEL_MIN_WEIGHT", 0)
    monkeypatch.setattr(cli_audit, "_registry_view", view)
    monkeypatch.setattr(cli_audit, "_bootstrap", lambda _settings: "unused:9092")
    monkeypatch.setattr(cli_audit, "load_from_kafka", lambda *_a, **_k: Loaded(records=list(data.records)))
    return tmp_path


def test_verify_reports_one_process_and_why_in_a_threaded_process(
        ledger: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import os
    import threading

    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        assert run(["audit", "verify", "-t", "cli", "--no-compare", "--jobs", "2", "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["ok"] is True and out["events"] == 600
        assert out["processes"] == 1
        assert out["processes_note"] == "2 wanted: this process has threads (fork is unsafe)"
        assert run(["audit", "verify", "-t", "cli", "--no-compare", "--jobs", "2"]) == 0
        table = "".join(capsys.readouterr().out.replace("│", " ").split())
        assert "processes1(2wanted:thisprocesshasthreads(forkisunsafe))" in table
    finally:
        stop.set()
        thread.join()
    assert [p.name for p in ledger.iterdir()] == [str(os.getpid())]


def test_verify_reports_the_processes_it_forked(ledger: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    import os

    from agenttrail.audit import parallel

    monkeypatch.setattr(parallel, "fork_is_safe", lambda: True)  # earlier tests may leave an idle thread
    assert run(["audit", "verify", "-t", "cli", "--no-compare", "--jobs", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is True and out["events"] == 600
    assert (out["processes"], out["processes_note"]) == (2, None)
    workers = {p.name for p in ledger.iterdir()}
    assert workers and str(os.getpid()) not in workers
