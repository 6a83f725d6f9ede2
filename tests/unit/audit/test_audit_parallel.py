"""Sessions verified in forked workers give the report one process gives, failure for failure."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agenttrail import crypto
from agenttrail.audit import parallel
from agenttrail.audit.bench import Dataset, synthetic_dataset
from agenttrail.audit.report import AuditReport, combine
from agenttrail.audit.verify import group_sessions, verify_all_sessions, verify_records
from agenttrail.control import commands as cmd
from agenttrail.control.view import RegistryView
from agenttrail.processors.chain import ChainState, extend
from agenttrail.processors.checkpoint import build_anchor
from agenttrail.schemas.envelope import build_envelope, signing_bytes
from agenttrail.schemas.ledger import LedgerRecord

TENANT = "acme"
Records = list[LedgerRecord]


@pytest.fixture(scope="module")
def data() -> Dataset:
    return synthetic_dataset(1_200, tenant_id=TENANT, sessions=12, agents=3)


@pytest.fixture
def forking(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fork even for these small inputs, and even though other tests of this process may have left
    an idle thread behind (it holds no lock the workers touch)."""
    monkeypatch.setattr(parallel, "PARALLEL_MIN_WEIGHT", 0)
    monkeypatch.setattr(parallel, "fork_is_safe", lambda: True)


def at(records: Records, session: str, index: int) -> int:
    return next(i for i, r in enumerate(records) if r.envelope.session_id == session and r.chain_index == index)


def with_envelope(records: Records, session: str, index: int, **changes: object) -> Records:
    out = list(records)
    i = at(out, session, index)
    out[i] = replace(out[i], envelope=replace(out[i].envelope, **changes))  # type: ignore[arg-type]
    return out


def flipped_payload(records: Records, session: str, index: int) -> Records:
    body = bytearray(records[at(records, session, index)].envelope.payload)
    body[5] ^= 1
    return with_envelope(records, session, index, payload=bytes(body))


def deleted(records: Records, session: str, index: int) -> Records:
    out = list(records)
    del out[at(out, session, index)]
    return out


def swapped(records: Records, session: str, index: int) -> Records:
    out = list(records)
    i, j = at(out, session, index), at(out, session, index + 1)
    out[i], out[j] = replace(out[i], chain_index=index + 1), replace(out[j], chain_index=index)
    return out


def forged(records: Records, session: str) -> Records:
    last = max((r for r in records if r.envelope.session_id == session), key=lambda r: r.chain_index)
    env = replace(last.envelope, event_id="01900000-0000-0000-0000-00000000ffff", seq=last.envelope.seq + 1)
    env = replace(env, signature=crypto.SigningKey.generate().sign(signing_bytes(env)))
    index, prev, entry, _ = extend(ChainState(last.chain_index + 1, last.entry_hash), signing_bytes(env))
    return [*records, LedgerRecord(env, index, prev, entry, False, 0, 0)]


def conflicting(records: Records, session: str, index: int) -> Records:
    original = records[at(records, session, index)]
    return [*records, replace(original, envelope=replace(original.envelope, type="error"))]


def everything(records: Records) -> Records:
    """Failures in many sessions (so in several chunks), several per session."""
    out = flipped_payload(records, "s-00002", 17)
    out = flipped_payload(out, "s-00002", 40)
    out = with_envelope(out, "s-00004", 40, type="error")
    out = with_envelope(out, "s-00011", 3, ts=123)
    out = with_envelope(out, "s-00007", 8, seq=2**64)  # malformed: signing_bytes refuses it
    out = deleted(out, "s-00001", 33)
    out = deleted(out, "s-00003", 99)
    out = swapped(out, "s-00005", 10)
    out = forged(out, "s-00000")
    return conflicting(out, "s-00009", 5)


TAMPERS: dict[str, Callable[[Records], Records]] = {
    "clean": list,
    "reversed": lambda r: list(reversed(r)),
    "payload": lambda r: flipped_payload(r, "s-00002", 17),
    "type": lambda r: with_envelope(r, "s-00004", 40, type="error"),
    "malformed": lambda r: with_envelope(r, "s-00007", 8, seq=2**64),
    "deleted": lambda r: deleted(r, "s-00001", 33),
    "deleted_last": lambda r: deleted(r, "s-00003", 99),
    "swapped": lambda r: swapped(r, "s-00005", 10),
    "forged": lambda r: forged(r, "s-00000"),
    "conflicting": lambda r: conflicting(r, "s-00009", 5),
    "everything": everything,
}


def findings(report: AuditReport) -> AuditReport:
    """The report without what may differ between runs: timings and how many processes checked."""
    return replace(report, chain_seconds=0.0, signature_seconds=0.0, processes=1, processes_note=None)


def audit(data: Dataset, records: Records, jobs: int, **kw: object) -> AuditReport:
    kw.setdefault("checkpoints", [data.checkpoint])
    report = verify_records(records, data.keys, service_keys=[data.service_key.verifier], tenant_id=TENANT,
                            jobs=jobs, **kw)  # type: ignore[arg-type]
    assert (report.processes, report.processes_note) == (jobs, None)  # the forking fixture lets it fork
    return findings(report)


@pytest.mark.usefixtures("forking")
@pytest.mark.parametrize("signatures", [True, False])
@pytest.mark.parametrize("tamper", list(TAMPERS))
def test_two_jobs_report_exactly_what_one_job_reports(data: Dataset, tamper: str, signatures: bool) -> None:
    records = TAMPERS[tamper](data.records)
    one = audit(data, records, 1, signatures=signatures)
    assert one == audit(data, records, 2, signatures=signatures)
    # without signatures an appended forgery is only "newer than the latest checkpoint" (a note)
    assert one.ok == (tamper in ("clean", "reversed") or (tamper == "forged" and not signatures))


@pytest.mark.usefixtures("forking")
def test_the_workers_really_run_and_report_progress(data: Dataset) -> None:
    items = sorted(group_sessions(everything(data.records), []).items())
    ticks: list[int] = []
    results, used = verify_all_sessions(items, {}, data.keys, True, jobs=2, progress=ticks.append)
    assert used.processes == 2 and len(ticks) > 1 and sum(ticks) == results.events == sum(len(c) for _, c in items)
    alone, used_alone = verify_all_sessions(items, {}, data.keys, True, jobs=1)
    assert used_alone.processes == 1
    assert (results.failures, results.heads, results.signed) == (alone.failures, alone.heads, alone.signed)


@pytest.mark.usefixtures("forking")
def test_purged_sessions_under_an_anchor(data: Dataset) -> None:
    heads = data.heads()
    anchor = build_anchor(TENANT, {"s-00003": heads["s-00003"], "s-00008": heads["s-00008"]}, 0, None, 5,
                          data.service_key)
    kept = [r for r in data.records
            if r.envelope.session_id not in ("s-00003", "s-00008") or r.chain_index in (50, 99)]
    assert audit(data, kept, 1, anchors=[anchor]) == audit(data, kept, 2, anchors=[anchor])
    bad = build_anchor(TENANT, {"s-00003": (100, bytes(32))}, 0, None, 5, data.service_key)
    assert audit(data, kept, 1, anchors=[bad]) == audit(data, kept, 2, anchors=[bad])


@pytest.mark.usefixtures("forking")
def test_registry_view_keys_in_the_workers() -> None:
    s = 1_000_000
    view = RegistryView()
    view.apply(cmd.plan_tenant(view, TENANT, 90, 1))
    rk, secret = cmd.plan_registration_key(view, TENANT, 3600, 1)
    view.apply(rk)
    old, new = crypto.SigningKey.generate(), crypto.SigningKey.generate()
    redeem = cmd.plan_redeem(view, secret, old.public_key, "fp", 2)
    view.apply(redeem)
    view.apply(cmd.plan_rotate_agent(view, TENANT, redeem.agent_id, new.public_key, 100 * s, 10))
    records: Records = []
    for session in ("s1", "s2", "s3"):
        state = ChainState()
        for seq, ts in enumerate((50 * s, 10_000 * s, 10_001 * s)):
            env = build_envelope(key=old, tenant_id=TENANT, agent_id=redeem.agent_id, session_id=session,
                                 seq=seq, type="message", payload={"n": seq}, ts=ts)
            index, prev, entry, state = extend(state, signing_bytes(env))
            records.append(LedgerRecord(env, index, prev, entry, False, 0, index))
    one = verify_records(records, view, tenant_id=TENANT, jobs=1)
    two = verify_records(records, view, tenant_id=TENANT, jobs=2)
    assert two.processes == 2 and findings(one) == findings(two)
    assert [(f.session_id, f.kind, f.chain_index, f.more) for f in two.failures] == \
        [(sid, "key_expired", 1, 1) for sid in ("s1", "s2", "s3")]


def test_small_inputs_one_job_or_other_threads_stay_in_process() -> None:
    assert parallel.plan_jobs(1, 10**6, 100) == 1
    assert parallel.plan_jobs(8, parallel.PARALLEL_MIN_WEIGHT - 1, 100) == 1
    assert parallel.plan_jobs(8, 10**6, 1) == 1
    with pytest.raises(ValueError):
        parallel.plan_jobs(0, 10**6, 100)
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        assert not parallel.fork_is_safe()
        assert parallel.plan_jobs(8, 10**6, 100) == 1
    finally:
        stop.set()
        thread.join()


def test_plan_caps_jobs_at_the_sessions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel, "fork_is_safe", lambda: True)
    assert parallel.plan_jobs(8, 10**6, 3) == 3
    assert parallel.plan_jobs(2, 10**6, 100) == 2


@given(st.lists(st.integers(0, 1_000), max_size=60), st.integers(1, 20))
def test_chunks_cover_the_items_in_order(weights: list[int], chunks: int) -> None:
    bounds = parallel.chunk_bounds(weights, chunks)
    assert len(bounds) <= chunks
    assert [i for lo, hi in bounds for i in range(lo, hi)] == list(range(len(weights)))
    assert all(lo < hi for lo, hi in bounds)
    if weights and chunks > 1 and sum(weights) > 0:
        assert max(sum(weights[lo:hi]) for lo, hi in bounds) <= sum(weights) / chunks + max(weights)


@pytest.fixture
def busy_thread() -> Iterator[None]:
    """Another thread in this process, as the chDB store or `serve` would have."""
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


@pytest.mark.usefixtures("busy_thread")
def test_a_threaded_process_reports_one_process_and_why(data: Dataset, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel, "PARALLEL_MIN_WEIGHT", 0)  # only the thread stands in the way
    report = verify_records(data.records, data.keys, tenant_id=TENANT, jobs=2)
    assert report.ok
    note = "2 wanted: this process has threads (fork is unsafe)"
    assert (report.processes, report.processes_note) == (1, note)
    assert (report.to_json()["processes"], report.to_json()["processes_note"]) == (1, note)
    assert report.summary()["processes"] == f"1 ({note})"


@pytest.mark.usefixtures("forking")
def test_a_forked_check_reports_its_processes(data: Dataset) -> None:
    report = verify_records(data.records, data.keys, tenant_id=TENANT, jobs=2)
    assert (report.processes, report.processes_note) == (2, None)
    assert report.summary()["processes"] == 2
    assert combine(report, AuditReport(rows_compared=5)).processes == 2


def test_the_plan_says_why_fewer_processes_than_wanted(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parallel.plan(1, 10**6, 100) == parallel.JobPlan(1)
    assert parallel.plan(4, 10**6, 1) == parallel.JobPlan(1, "4 wanted: only one session")
    assert parallel.plan(4, 100, 10) == parallel.JobPlan(
        1, f"4 wanted: 100 events, fewer than the {parallel.PARALLEL_MIN_WEIGHT:,} at which forking pays")
    monkeypatch.setattr(parallel, "fork_is_safe", lambda: True)
    assert parallel.plan(8, 10**6, 3) == parallel.JobPlan(3, "8 wanted: only 3 sessions")
    assert parallel.plan(2, 10**6, 100) == parallel.JobPlan(2)
    monkeypatch.setattr(parallel, "default_jobs", lambda: 2)
    monkeypatch.setattr(parallel, "fork_is_safe", lambda: False)
    monkeypatch.setattr(parallel, "fork_unsafe_reason", lambda: "this platform cannot fork")
    assert parallel.plan(None, 10**6, 100) == parallel.JobPlan(1, "2 wanted (one per CPU): this platform cannot fork")
