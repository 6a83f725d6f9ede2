"""SessionTable: deterministic ledger records, rebuild by absorb() == uninterrupted run, dup vs gap."""

from __future__ import annotations

from functools import cache

from corpus.build import view_world
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agenttrail.processors.chain import GENESIS_HEAD, verify_chain
from agenttrail.processors.sequencer import Chained, Outcome, Rejected, SessionTable
from agenttrail.processors.verify import VerifyPolicy
from agenttrail.schemas.envelope import build_envelope, encode_envelope, signing_bytes
from agenttrail.schemas.ledger import decode_ledger, encode_ledger

NOW = 1_750_000_000 * 1_000_000
POLICY = VerifyPolicy()
VIEW, WORLD = view_world(NOW)
TENANT = WORLD.tenant
SESSIONS = ("s-0", "s-1", "s-2")
SEQS = 8

Message = tuple[bytes, bytes]  # (key, value)


@cache
def message(session: str, seq: int, variant: int = 0) -> Message:
    env = build_envelope(key=WORLD.agent.key, tenant_id=TENANT, agent_id=WORLD.agent.agent_id,
                         session_id=session, seq=seq, type="message",
                         payload={"seq": seq, "variant": variant}, ts=NOW - 1000 + seq,
                         event_id=f"0190c0de-0000-7000-8000-{seq * 10 + variant:012d}")
    return session.encode(), encode_envelope(env)


def run(table: SessionTable, msgs: list[Message], first_offset: int = 0) -> list[Outcome]:
    return [table.process(v, k, TENANT, 0, first_offset + i, VIEW, POLICY, NOW) for i, (k, v) in enumerate(msgs)]


def chained(outcomes: list[Outcome]) -> list[Chained]:
    return [o for o in outcomes if isinstance(o, Chained)]


# ---- determinism -------------------------------------------------------------------------------------
def test_same_input_gives_identical_ledger_records() -> None:
    msgs = [message(s, q) for q in range(4) for s in SESSIONS]
    first, second = run(SessionTable(), msgs), run(SessionTable(), msgs)
    assert first == second
    assert [encode_ledger(o.record) for o in chained(first)] == [encode_ledger(o.record) for o in chained(second)]
    assert all(decode_ledger(encode_ledger(o.record)) == o.record for o in chained(first))


def test_records_form_chains_that_verify_from_genesis() -> None:
    msgs = [message(s, q) for q in range(SEQS) for s in SESSIONS]
    outs = chained(run(SessionTable(), msgs))
    assert len(outs) == len(msgs)
    for session in SESSIONS:
        recs = [o.record for o in outs if o.record.envelope.session_id == session]
        assert [r.chain_index for r in recs] == list(range(SEQS))
        assert recs[0].prev_hash == GENESIS_HEAD
        report = verify_chain([(r.chain_index, r.prev_hash, r.entry_hash, signing_bytes(r.envelope)) for r in recs])
        assert report.ok and report.checked == SEQS


def test_sessions_are_independent() -> None:
    alone = chained(run(SessionTable(), [message("s-0", q) for q in range(3)]))
    mixed = chained(run(SessionTable(), [m for q in range(3) for m in (message("s-1", q), message("s-0", q))]))
    only_s0 = [o.record for o in mixed if o.record.envelope.session_id == "s-0"]
    assert [(r.chain_index, r.prev_hash, r.entry_hash) for r in only_s0] == \
        [(o.record.chain_index, o.record.prev_hash, o.record.entry_hash) for o in alone]


# ---- duplicates and gaps -----------------------------------------------------------------------------
def test_gap_is_flagged_and_kept_duplicate_is_rejected() -> None:
    table = SessionTable()
    outs = run(table, [message("s-0", 0), message("s-0", 1), message("s-0", 3)])
    assert [o.record.seq_gap for o in chained(outs)] == [False, False, True]
    assert [o.record.chain_index for o in chained(outs)] == [0, 1, 2]
    head = table.sessions[(TENANT, "s-0")].head
    for late in (message("s-0", 3), message("s-0", 1), message("s-0", 2), message("s-0", 3, variant=1)):
        out = table.process(late[1], late[0], TENANT, 0, 50, VIEW, POLICY, NOW)
        assert isinstance(out, Rejected) and out.reason == "duplicate_seq"
    state = table.sessions[(TENANT, "s-0")]
    assert (state.index, state.head) == (3, head)  # rejections leave the chain untouched
    nxt = chained(run(table, [message("s-0", 4)], 60))[0].record
    assert (nxt.chain_index, nxt.prev_hash, nxt.seq_gap) == (3, head, False)


def test_first_event_not_at_seq_zero_is_a_gap() -> None:
    rec = chained(run(SessionTable(), [message("s-0", 2)]))[0].record
    assert rec.seq_gap and rec.chain_index == 0


def test_verify_rejection_does_not_touch_state() -> None:
    table = SessionTable()
    run(table, [message("s-0", 0)])
    before = (table.sessions[(TENANT, "s-0")].index, table.sessions[(TENANT, "s-0")].head)
    key, value = message("s-0", 1)
    out = table.process(value[:-5], key, TENANT, 0, 1, VIEW, POLICY, NOW)
    assert isinstance(out, Rejected) and out.reason == "malformed"
    assert (table.sessions[(TENANT, "s-0")].index, table.sessions[(TENANT, "s-0")].head) == before
    assert chained(run(table, [message("s-0", 1)], 2))[0].record.chain_index == 1


# ---- rebuild -----------------------------------------------------------------------------------------
def test_absorb_ignores_redelivered_records() -> None:
    recs = [o.record for o in chained(run(SessionTable(), [message("s-0", q) for q in range(4)]))]
    table = SessionTable()
    table.absorb_all(recs + recs[:2] + [recs[1]])
    state = table.sessions[(TENANT, "s-0")]
    assert (state.index, state.head, state.last_seq) == (4, recs[-1].entry_hash, {WORLD.agent.agent_id: 3})
    assert table.heads(TENANT) == {"s-0": (4, recs[-1].entry_hash)}


def test_drop_tenant_partition_forgets_only_owned_sessions() -> None:
    table = SessionTable()
    run(table, [message(s, 0) for s in SESSIONS])
    table.drop_tenant_partition(TENANT, lambda sid: sid != "s-1")
    assert list(table.sessions) == [(TENANT, "s-1")]


_pool = st.tuples(st.sampled_from(SESSIONS), st.integers(0, SEQS - 1), st.integers(0, 1))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_pool, min_size=1, max_size=40), st.data())
def test_rebuild_then_continue_equals_an_uninterrupted_run(picks: list[tuple[str, int, int]],
                                                           data: st.DataObject) -> None:
    msgs = [message(*p) for p in picks]
    cut = data.draw(st.integers(0, len(msgs)), label="crash after")
    whole = run(SessionTable(), msgs)

    before = SessionTable()
    head = run(before, msgs[:cut])
    ledger = [o.record for o in chained(head)]
    redelivered = data.draw(st.integers(0, len(ledger)), label="records seen twice")
    rebuilt = SessionTable()
    rebuilt.absorb_all(ledger + ledger[:redelivered])  # a read may meet records twice
    tail = run(rebuilt, msgs[cut:], first_offset=cut)

    assert head + tail == whole
    assert rebuilt.heads(TENANT) == _heads(whole)


def _heads(outcomes: list[Outcome]) -> dict[str, tuple[int, bytes]]:
    heads: dict[str, tuple[int, bytes]] = {}
    for o in chained(outcomes):
        heads[o.record.envelope.session_id] = (o.record.chain_index + 1, o.record.entry_hash)
    return heads
