"""The audit core over real keys and real chains: a clean dataset verifies; every tampering is
detected and located (tenant, session, chain index)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from agenttrail import crypto
from agenttrail.audit.bench import Dataset, run_audit, service_key, synthetic_dataset
from agenttrail.audit.report import AuditReport
from agenttrail.audit.verify import SIGNATURE_BATCH, StaticKey, StaticKeys, verify_records
from agenttrail.control import commands as cmd
from agenttrail.control.view import RegistryView
from agenttrail.processors.chain import ChainState, extend
from agenttrail.processors.checkpoint import build_anchor, build_checkpoint
from agenttrail.schemas.envelope import build_envelope, signing_bytes
from agenttrail.schemas.ledger import LedgerRecord

TENANT = "acme"


@pytest.fixture(scope="module")
def data() -> Dataset:
    return synthetic_dataset(600, tenant_id=TENANT, sessions=6, agents=3)


def audit(data: Dataset, records: list[LedgerRecord], **kw: object):
    kw.setdefault("checkpoints", [data.checkpoint])
    return verify_records(records, data.keys, service_keys=[data.service_key.verifier], tenant_id=TENANT,
                          **kw)  # type: ignore[arg-type]


def at(data: Dataset, session: str, index: int) -> int:
    return next(i for i, r in enumerate(data.records)
                if r.envelope.session_id == session and r.chain_index == index)


def located(report, check: str, session: str | None, index: int | None) -> list:
    return [f for f in report.failures if f.check == check and f.session_id == session
            and f.chain_index == index and f.tenant_id == TENANT]


def test_clean_dataset_verifies_with_counts(data: Dataset) -> None:
    report = run_audit(data, signatures=True)
    assert report.ok, report.failures
    assert (report.sessions, report.events, report.signatures_checked, report.checkpoints_checked) == \
        (6, 600, 600, 1)
    assert report.to_json()["ok"] is True and report.summary()["result"] == "OK"


def test_order_of_input_does_not_matter(data: Dataset) -> None:
    assert audit(data, list(reversed(data.records))).ok


def test_payload_byte_changed_is_located(data: Dataset) -> None:
    records = list(data.records)
    i = at(data, "s-00002", 17)
    env = records[i].envelope
    body = bytearray(env.payload)
    body[5] ^= 0x01
    records[i] = replace(records[i], envelope=replace(env, payload=bytes(body)))
    report = audit(data, records)
    assert not report.ok
    [f] = report.failures
    assert (f.check, f.kind, f.session_id, f.chain_index) == ("payload", "payload_hash_mismatch", "s-00002", 17)
    assert f.expected == env.payload_sha256.hex()


def test_erased_payload_still_verifies(data: Dataset) -> None:
    records = [replace(r, envelope=replace(r.envelope, payload=b"")) if r.chain_index % 3 == 0 else r
               for r in data.records]
    assert audit(data, records).ok


@pytest.mark.parametrize("field,value", [("type", "error"), ("ts", 123)])
def test_changed_type_or_timestamp_is_located(data: Dataset, field: str, value: object) -> None:
    records = list(data.records)
    i = at(data, "s-00004", 40)
    records[i] = replace(records[i], envelope=replace(records[i].envelope, **{field: value}))
    report = audit(data, records)
    [chain] = located(report, "chain", "s-00004", 40)
    assert chain.kind == "entry_hash_mismatch"
    assert located(report, "signature", "s-00004", 40)
    assert {f.session_id for f in report.failures} == {"s-00004"}


def test_deleted_row_is_located_at_the_gap(data: Dataset) -> None:
    records = list(data.records)
    del records[at(data, "s-00001", 33)]
    report = audit(data, records)
    [f] = located(report, "chain", "s-00001", 34)
    assert (f.kind, f.expected, f.actual) == ("index_gap", "33", "34")


def test_deleted_last_row_fails_the_checkpoint(data: Dataset) -> None:
    records = list(data.records)
    del records[at(data, "s-00003", 99)]
    report = audit(data, records)
    assert [f.kind for f in report.failures] == ["records_missing"]
    assert report.failures[0].expected == "600 events"


def test_swapped_rows_are_located(data: Dataset) -> None:
    records = list(data.records)
    i, j = at(data, "s-00005", 10), at(data, "s-00005", 11)
    records[i], records[j] = replace(records[i], chain_index=11), replace(records[j], chain_index=10)
    report = audit(data, records)
    [f] = located(report, "chain", "s-00005", 10)
    assert f.kind in {"prev_hash_mismatch", "entry_hash_mismatch"}


def test_forged_row_without_valid_signature_is_located(data: Dataset) -> None:
    last = data.records[at(data, "s-00000", 99)]
    forger = crypto.SigningKey.generate()
    env = replace(last.envelope, event_id="01900000-0000-0000-0000-00000000ffff", seq=100, ts=last.envelope.ts + 1)
    env = replace(env, signature=forger.sign(signing_bytes(env)))  # claims the agent's key id
    index, prev, entry, _ = extend(ChainState(100, last.entry_hash), signing_bytes(env))
    forged = LedgerRecord(env, index, prev, entry, False, 0, 0)
    report = audit(data, [*data.records, forged])
    [f] = report.failures
    assert (f.check, f.kind, f.session_id, f.chain_index) == ("signature", "bad_signature", "s-00000", 100)


def test_forged_copy_of_an_existing_index_is_reported(data: Dataset) -> None:
    original = data.records[at(data, "s-00002", 5)]
    forged = replace(original, envelope=replace(original.envelope, type="error"))
    report = audit(data, [*data.records, forged])
    assert located(report, "chain", "s-00002", 5)[0].kind == "conflicting_records"


def test_checkpoint_signed_by_another_key_fails(data: Dataset) -> None:
    other = service_key(label="intruder")
    cp = build_checkpoint(TENANT, data.heads(), None, data.checkpoint.time, other)
    report = audit(data, list(data.records), checkpoints=[cp])
    assert [f.check for f in report.failures] == ["checkpoint", "checkpoint"]  # the note, then the root check
    assert "trusted" in report.failures[0].kind


def test_checkpoint_with_a_different_root_fails(data: Dataset) -> None:
    heads = data.heads()
    heads["s-00001"] = (heads["s-00001"][0], bytes(32))
    cp = build_checkpoint(TENANT, heads, None, data.checkpoint.time, data.service_key)
    report = audit(data, list(data.records), checkpoints=[cp])
    [f] = report.failures
    assert (f.check, f.kind) == ("checkpoint", "root_differs_from_the_session_heads")
    tampered = replace(data.checkpoint, root=bytes(32))  # old signature, new root
    assert audit(data, list(data.records), checkpoints=[tampered]).failures[0].kind == "bad_signature"


def test_checkpoint_chain_link_is_checked(data: Dataset) -> None:
    first = build_checkpoint(TENANT, {}, None, 1, data.service_key)
    unlinked = build_checkpoint(TENANT, data.heads(), None, 2, data.service_key)
    report = audit(data, list(data.records), checkpoints=[first, unlinked])
    assert [f.kind for f in report.failures] == ["checkpoint_does_not_link_to_the_previous_one"]
    linked = build_checkpoint(TENANT, data.heads(), first.hash, 2, data.service_key)
    assert audit(data, list(data.records), checkpoints=[first, linked]).ok


def test_purged_session_keeps_lessons_under_its_anchor(data: Dataset) -> None:
    heads = data.heads()
    anchor = build_anchor(TENANT, {"s-00003": heads["s-00003"]}, 0, None, 5, data.service_key)
    # s-00003 purged except two rows (pretend lessons), the last one at the anchored head
    kept = [r for r in data.records if r.envelope.session_id != "s-00003" or r.chain_index in (50, 99)]
    report = audit(data, kept, anchors=[anchor])
    assert report.ok, report.failures
    assert report.anchors_checked == 1
    bad_anchor = build_anchor(TENANT, {"s-00003": (100, bytes(32))}, 0, None, 5, data.service_key)
    report = audit(data, kept, anchors=[bad_anchor])
    assert located(report, "anchor", "s-00003", 99)


def test_no_signatures_mode_skips_only_signatures(data: Dataset) -> None:
    report = run_audit(data, signatures=False)
    assert report.ok and report.signatures_checked == 0 and report.events == 600


def chained(envelopes: list) -> list[LedgerRecord]:
    state, out = ChainState(), []
    for env in envelopes:
        index, prev, entry, state = extend(state, signing_bytes(env))
        out.append(LedgerRecord(env, index, prev, entry, False, 0, index))
    return out


def test_keys_come_from_the_registry_view_at_the_event_time() -> None:
    s = 1_000_000
    view = RegistryView()
    view.apply(cmd.plan_tenant(view, TENANT, 90, 1))
    rk, secret = cmd.plan_registration_key(view, TENANT, 3600, 1)
    view.apply(rk)
    old, new, stranger = (crypto.SigningKey.generate() for _ in range(3))
    redeem = cmd.plan_redeem(view, secret, old.public_key, "fp", 2)
    view.apply(redeem)
    agent = redeem.agent_id
    rotation = cmd.plan_rotate_agent(view, TENANT, agent, new.public_key, 100 * s, 10)
    view.apply(rotation)

    def env(key: crypto.SigningKey, seq: int, ts: int):
        return build_envelope(key=key, tenant_id=TENANT, agent_id=agent, session_id="s1", seq=seq,
                              type="message", payload={"n": seq}, ts=ts)

    good = chained([env(old, 0, 50 * s), env(new, 1, 200 * s)])
    assert verify_records(good, view, tenant_id=TENANT).ok
    late_old = chained([env(old, 0, 50 * s), env(old, 1, 10_000 * s), env(stranger, 2, 10_001 * s)])
    report = verify_records(late_old, view, tenant_id=TENANT)
    [f] = report.failures  # first bad record per session and check; the later one is counted
    assert (f.check, f.kind, f.session_id, f.chain_index, f.more) == ("key", "key_expired", "s1", 1, 1)


class ExpiredAt:
    """The dataset's keys, except that the key of the event at `ts` has expired."""

    def __init__(self, keys: StaticKeys, ts: int) -> None:
        self.keys, self.ts = keys, ts

    def agent_key(self, tenant_id: str, key_id: str, at_ts_micros: int, agent_id: str | None = None):
        if at_ts_micros == self.ts:
            return StaticKey(False, "key_expired", None)
        return self.keys.agent_key(tenant_id, key_id, at_ts_micros, agent_id)


def test_bad_signatures_in_a_long_session_are_located_through_the_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    n = 2 * SIGNATURE_BATCH + 276  # one session, three batches
    long = synthetic_dataset(n, tenant_id=TENANT, sessions=1, agents=1)
    records = list(long.records)
    for i in (700, 1100):  # in the second and third batch; the chain does not cover signatures
        sig = bytearray(records[i].envelope.signature)
        sig[40] ^= 0x01
        records[i] = replace(records[i], envelope=replace(records[i].envelope, signature=bytes(sig)))
    batches: list[int] = []
    batched = crypto.verify_many

    def spy(pks, msgs, sigs):
        batches.append(len(sigs))
        return batched(pks, msgs, sigs)

    def run(keys) -> AuditReport:
        report = verify_records(records, keys, checkpoints=[long.checkpoint], service_keys=[long.service_key.verifier],
                                tenant_id=TENANT, jobs=1)
        return replace(report, chain_seconds=0.0, signature_seconds=0.0)

    monkeypatch.setattr(crypto, "verify_many", spy)
    report, expired = run(long.keys), run(ExpiredAt(long.keys, records[600].envelope.ts))
    assert batches == [SIGNATURE_BATCH, SIGNATURE_BATCH, 276, SIGNATURE_BATCH, SIGNATURE_BATCH, 275]  # 2nd: one key bad
    [f] = report.failures
    assert (f.check, f.kind, f.session_id, f.chain_index, f.more) == ("signature", "bad_signature", "s-00000", 700, 1)
    assert report.signatures_checked == n
    [f] = expired.failures  # the key failure comes first in chain order, the two signatures are counted
    assert (f.check, f.kind, f.chain_index, f.more) == ("key", "key_expired", 600, 2)
    # the same reports as checking one signature at a time
    monkeypatch.setattr(crypto, "verify_many", lambda pks, msgs, sigs: list(map(crypto.verify, pks, msgs, sigs)))
    assert (run(long.keys), run(ExpiredAt(long.keys, records[600].envelope.ts))) == (report, expired)
