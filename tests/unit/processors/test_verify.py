"""verify_event against a real RegistryView and real signed envelopes: every reason, in order."""

from __future__ import annotations

from dataclasses import replace

import pytest
from corpus.build import (
    DAY,
    Case,
    Identity,
    build_corpus,
    poison_cases,
    resign,
    seeded_key,
    view_world,
    with_payload,
)

from agenttrail import crypto
from agenttrail.control import commands as cmd
from agenttrail.errors import InvalidEvent
from agenttrail.processors.dlq import REASONS
from agenttrail.processors.sequencer import Chained, Rejected, SessionTable
from agenttrail.processors.verify import Verified, VerifyPolicy, verify_event, verify_events
from agenttrail.schemas.envelope import Envelope, build_envelope, encode_envelope, signing_bytes

NOW = 1_750_000_000 * 1_000_000
POLICY = VerifyPolicy()
VIEW, WORLD = view_world(NOW)
CORPUS = build_corpus(WORLD)


def reason_of(value: bytes | None, key: bytes | None, topic: str = "corpus-a", view: object = VIEW,
              policy: VerifyPolicy = POLICY, now: int = NOW) -> str:
    try:
        verify_event(value, key, topic, view, policy, now)  # type: ignore[arg-type]
    except InvalidEvent as exc:
        assert exc.reason in REASONS, exc.reason
        return exc.reason
    return "ok"


def run_case(case: Case) -> str:
    table = SessionTable()
    for offset, (key, value) in enumerate(case.before):
        assert isinstance(table.process(value, key, case.topic_tenant, 0, offset, VIEW, POLICY, NOW), Chained)
    out = table.process(case.value, case.key, case.topic_tenant, 0, 99, VIEW, POLICY, NOW)
    return out.reason if isinstance(out, Rejected) else "ok"


def valid(seq: int = 0, who: Identity | None = None, **kw: object) -> Envelope:
    who = who or WORLD.agent
    return build_envelope(key=who.key, tenant_id=who.tenant_id, agent_id=who.agent_id, session_id="s-valid",
                          seq=seq, type=kw.pop("type", "message"), payload=kw.pop("payload", {"n": seq}),  # type: ignore[arg-type]
                          ts=kw.pop("ts", NOW), event_id=f"0190c0de-0000-7000-8000-{seq:012d}")  # type: ignore[arg-type]


# ---- the corpus ------------------------------------------------------------------------------------
def test_corpus_is_large_distinct_and_deterministic() -> None:
    assert len(CORPUS) >= 30
    assert len({c.name for c in CORPUS}) == len(CORPUS)
    assert len({(c.key, c.value) for c in CORPUS}) == len(CORPUS)  # no two cases are the same bytes
    again = build_corpus(WORLD)
    assert [(c.name, c.key, c.value, c.before) for c in again] == [(c.name, c.key, c.value, c.before)
                                                                    for c in CORPUS]


@pytest.mark.parametrize("case", CORPUS, ids=lambda c: c.name)
def test_corpus_case_gets_its_reason(case: Case) -> None:
    assert run_case(case) == case.reason


def test_every_reason_code_is_reachable() -> None:
    ghost = build_envelope(key=WORLD.agent.key, tenant_id="ghost", agent_id=WORLD.agent.agent_id,
                           session_id="s", seq=0, type="message", payload={}, ts=NOW)
    assert reason_of(encode_envelope(ghost), b"s", topic="ghost") == "unknown_tenant"
    assert {c.reason for c in CORPUS} | {"unknown_tenant"} == REASONS


@pytest.mark.parametrize("case", poison_cases(WORLD), ids=lambda c: c.name)
def test_poison_payload_is_rejected_not_raised(case: Case) -> None:
    """Regression: json.loads raises RecursionError on deep nesting (not a ValueError); it used to
    escape verify_event and SessionTable.process and kill the chain thread on every restart."""
    assert run_case(case) == case.reason


# ---- valid events ----------------------------------------------------------------------------------
def test_valid_event_passes_with_its_signing_bytes() -> None:
    env = valid()
    out = verify_event(encode_envelope(env), b"s-valid", "corpus-a", VIEW, POLICY, NOW)
    assert out.envelope == env
    assert out.signing_bytes == signing_bytes(env)
    assert crypto.verify(WORLD.agent.key.public_key, out.signing_bytes, env.signature)


def test_clock_skew_bound_is_inclusive_and_late_events_are_fine() -> None:
    skew = POLICY.clock_skew_micros
    assert reason_of(encode_envelope(valid(ts=NOW + skew)), b"s-valid") == "ok"
    assert reason_of(encode_envelope(valid(ts=NOW + skew + 1)), b"s-valid") == "clock_skew"
    assert reason_of(encode_envelope(valid(ts=NOW - 30 * DAY)), b"s-valid") == "ok"  # offline spool


def test_retention_cut_and_lessons_kept_forever() -> None:
    cut = NOW - WORLD.retention_days * DAY
    assert reason_of(encode_envelope(valid(ts=cut)), b"s-valid") == "ok"  # exactly at the cut: kept
    assert reason_of(encode_envelope(valid(ts=cut - 1)), b"s-valid") == "expired"
    assert reason_of(encode_envelope(valid(ts=cut - 400 * DAY, type="lesson")), b"s-valid") == "ok"


def test_rotated_key_is_valid_during_its_grace_period() -> None:
    view, world = view_world(NOW)
    old = world.agent
    view.apply(cmd.plan_rotate_agent(view, old.tenant_id, old.agent_id, seeded_key("next").public_key,
                                     NOW, grace_seconds=60))
    assert reason_of(encode_envelope(valid(ts=NOW + 60_000_000, who=old)), b"s-valid", view=view) == "ok"
    assert reason_of(encode_envelope(valid(ts=NOW + 60_000_001, who=old)), b"s-valid",
                     view=view) == "key_expired"


def test_oversize_limit_comes_from_the_policy() -> None:
    data = encode_envelope(valid())
    assert reason_of(data, b"s-valid", policy=VerifyPolicy(max_event_bytes=len(data))) == "ok"
    assert reason_of(data, b"s-valid", policy=VerifyPolicy(max_event_bytes=len(data) - 1)) == "oversize"


def test_canonical_check_can_be_switched_off() -> None:
    env = with_payload(valid(), b'{"n": 0}', WORLD.agent.key)
    assert reason_of(encode_envelope(env), b"s-valid") == "payload_not_canonical"
    assert reason_of(encode_envelope(env), b"s-valid",
                     policy=VerifyPolicy(check_canonical_payload=False)) == "ok"


# ---- the order of the checks -----------------------------------------------------------------------
def test_checks_run_in_the_documented_order() -> None:
    """Add faults one at a time, each earlier in the order than the last: the newest one must win.

    oversize, empty key, decode, fields, tenant, key, tenant status, agent key, payload hash,
    canonical payload, signature, clock skew / expired.
    """
    a = WORLD.agent
    env = valid(ts=NOW - 200 * DAY)
    steps: list[tuple[str, Envelope, bytes | None, str, VerifyPolicy]] = []
    steps.append(("expired", env, b"s-valid", "corpus-a", POLICY))
    env = replace(env, seq=1)  # signature no longer matches
    steps.append(("bad_signature", env, b"s-valid", "corpus-a", POLICY))
    env = replace(env, payload=b'{ "n": 0 }', payload_sha256=crypto.sha256(b'{ "n": 0 }'))
    steps.append(("payload_not_canonical", env, b"s-valid", "corpus-a", POLICY))
    env = replace(env, payload=b'{"n":1}')
    steps.append(("payload_hash_mismatch", env, b"s-valid", "corpus-a", POLICY))
    env = replace(env, agent_id=WORLD.revoked.agent_id, key_id=WORLD.revoked.key.key_id)
    steps.append(("agent_revoked", env, b"s-valid", "corpus-a", POLICY))
    env = replace(env, agent_id="ag-nobody")
    steps.append(("unknown_agent", env, b"s-valid", "corpus-a", POLICY))
    denv = replace(env, tenant_id="corpus-d")
    steps.append(("tenant_disabled", denv, b"s-valid", "corpus-d", POLICY))
    genv = replace(env, tenant_id="ghost")
    steps.append(("unknown_tenant", genv, b"s-valid", "ghost", POLICY))
    steps.append(("key_mismatch", genv, b"other-session", "ghost", POLICY))
    steps.append(("tenant_mismatch", genv, b"other-session", "corpus-a", POLICY))
    benv = replace(genv, seq=-1)
    steps.append(("bad_field", benv, b"other-session", "corpus-a", POLICY))
    for reason, e, key, topic, policy in steps:
        assert reason_of(encode_envelope_loose(e), key, topic=topic, policy=policy) == reason, reason
    data = encode_envelope_loose(benv)
    assert reason_of(data[:-3], b"other-session") == "malformed"
    assert reason_of(data[:2] + bytes(8) + data[10:-3], b"other-session") == "unknown_schema"
    assert reason_of(data[:-3], None) == "empty_key"
    assert reason_of(data[:-3], None, policy=VerifyPolicy(max_event_bytes=len(data) - 4)) == "oversize"
    assert a.tenant_id == "corpus-a"


def encode_envelope_loose(env: Envelope) -> bytes:
    """encode_envelope, except that a negative seq (which Avro can carry) is allowed."""
    from corpus.build import loose_encode

    return loose_encode(env)


def test_an_empty_payload_is_refused_at_ingestion() -> None:
    """Erasure happens in the stores later; an event that arrives already 'erased' is refused,
    forged or not, so it can never pass without its payload hash being checked."""
    env = valid()
    forged = resign(replace(env, payload_sha256=bytes(32), payload=b""), seeded_key("impostor"))
    assert reason_of(encode_envelope(forged), b"s-valid") == "malformed"
    honest = resign(replace(env, payload=b""), seeded_key("agent"))
    assert reason_of(encode_envelope(honest), b"s-valid") == "malformed"


def test_dead_letter_of_the_largest_event_fits_in_a_kafka_message() -> None:
    """Regression: a rejected event near `max_event_bytes` (900 kB) made a ~1.2 MB JSON dead letter
    (base64 grows it by 4/3), over the producer's `message.max.bytes` (1,000,000): the batch
    transaction aborted and was retried forever, wedging every partition of the worker."""
    from agenttrail.processors.dlq import DlqRecord

    limit = POLICY.max_event_bytes
    original = b"\xc3\x01" + bytes(limit - 2)
    letter = DlqRecord.from_invalid(InvalidEvent("bad_signature", "x"), "agenttrail.t.events", 0, 0, original, NOW)
    assert len(letter.to_json()) <= 1_000_000
    assert original.startswith(letter.original) and str(limit) in letter.detail


# ---- a batch answers as one by one -----------------------------------------------------------------
def _one_by_one(value: bytes | None, key: bytes | None, topic: str) -> object:
    try:
        return verify_event(value, key, topic, VIEW, POLICY, NOW)
    except InvalidEvent as exc:
        return exc.reason
    except Exception:  # verify_events turns these into "malformed", as SessionTable.process does
        return "malformed"


def test_verify_events_answers_each_message_as_verify_event_does() -> None:
    """The whole corpus and the poison cases, between valid events, in one batch: the same reason
    for each bad one (a bad signature among good ones costs the batch a one-by-one re-check, which
    must find exactly it) and the same envelope and signing bytes for each good one."""
    cases = [*CORPUS, *poison_cases(WORLD)]
    messages: list[tuple[bytes | None, bytes | None]] = []
    tenants: list[str] = []
    for i, case in enumerate(cases):
        good = valid(seq=1000 + i)
        messages += [(encode_envelope(good), b"s-valid"), (case.value, case.key)]
        tenants += ["corpus-a", case.topic_tenant]
    answers = verify_events(messages, tenants, VIEW, POLICY, NOW)
    assert len(answers) == len(messages)
    for (value, key), tenant, answer in zip(messages, tenants, answers, strict=True):
        expected = _one_by_one(value, key, tenant)
        got = answer.reason if isinstance(answer, InvalidEvent) else answer
        assert got == expected
    assert sum(isinstance(a, Verified) for a in answers) >= len(cases)  # every interleaved good one


def test_verify_events_all_valid_and_empty() -> None:
    envs = [valid(seq=i) for i in range(50)]
    answers = verify_events([(encode_envelope(e), b"s-valid") for e in envs], ["corpus-a"] * 50, VIEW, POLICY, NOW)
    assert [a.envelope for a in answers] == envs  # type: ignore[union-attr]
    assert [a.signing_bytes for a in answers] == [signing_bytes(e) for e in envs]  # type: ignore[union-attr]
    assert verify_events([], [], VIEW, POLICY, NOW) == []
