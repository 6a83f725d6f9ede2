"""The hot path's ledger encoder reuses the agent's envelope bytes: it must equal encode_ledger."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from agenttrail import crypto
from agenttrail.schemas.envelope import EVENT_TYPES, build_envelope, encode_envelope
from agenttrail.schemas.ledger import LedgerRecord, decode_ledger, encode_ledger, encode_ledger_from_raw

KEY = crypto.SigningKey.from_seed(bytes(range(32)))
text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40)
safe_int = st.integers(-(2**53) + 1, 2**53 - 1)


@settings(max_examples=150, deadline=None)
@given(session=text, agent=text, seq=st.integers(0, 2**62), ts=st.integers(0, 2**47 * 1000 - 1),
       kind=st.sampled_from(EVENT_TYPES), payload=st.dictionaries(text, safe_int | text, max_size=4),
       attrs=st.dictionaries(text, text, max_size=3), index=st.integers(0, 2**62),
       prev=st.binary(min_size=32, max_size=32), entry=st.binary(min_size=32, max_size=32), gap=st.booleans(),
       partition=st.integers(0, 2**31 - 1), offset=st.integers(0, 2**62))
def test_same_bytes_as_encode_ledger(session: str, agent: str, seq: int, ts: int, kind: str, payload: dict,
                                     attrs: dict, index: int, prev: bytes, entry: bytes, gap: bool,
                                     partition: int, offset: int) -> None:
    env = build_envelope(key=KEY, tenant_id="acme", agent_id=agent, session_id=session, seq=seq, type=kind,
                         payload=payload, attributes=attrs, ts=ts)
    rec = LedgerRecord(env, index, prev, entry, gap, partition, offset)
    fast = encode_ledger_from_raw(encode_envelope(env), rec)
    assert fast == encode_ledger(rec)
    assert decode_ledger(fast) == rec


def test_other_envelope_versions_fall_back() -> None:
    env = build_envelope(key=KEY, tenant_id="acme", agent_id="a", session_id="s", seq=0, type="message",
                         payload={"text": "x"})
    rec = LedgerRecord(env, 0, bytes(32), bytes(32), False, 0, 0)
    not_v1 = b"\xc3\x01" + bytes(8) + encode_envelope(env)[10:]
    assert encode_ledger_from_raw(not_v1, rec) == encode_ledger(rec)
