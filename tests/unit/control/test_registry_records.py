"""Registry records: canonical encoding, one validating constructor, keys that survive compaction."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agenttrail.control.credentials import hash_secret, new_api_key_secret
from agenttrail.control.records import (
    RECORD_TYPES,
    AgentFingerprintRecord,
    AgentKeyRecord,
    AgentRevokeRecord,
    ApiKeyRecord,
    ApiKeyRevokeRecord,
    ApiKeyRotateRecord,
    ApiKeyUsedRecord,
    InvalidRecord,
    RedeemRecord,
    RegistrationKeyRecord,
    RegistrationKeyRevokeRecord,
    ServiceKeyRecord,
    TenantRecord,
    TenantStatusRecord,
    decode_record,
    encode_record,
)

T0 = 1_700_000_000_000_000
PK = bytes(range(32))


def samples() -> list[object]:
    return [
        TenantRecord("acme", 90, T0),
        TenantStatusRecord("acme", "disabled", T0),
        ApiKeyRecord("ak_1", "acme", "abcdefghij", "0" * 64, ("events:read",), "ci", T0, None, None),
        ApiKeyRotateRecord("ak_1", "acme", "ak_2", T0, T0 + 5),
        ApiKeyRevokeRecord("ak_1", "acme", T0),
        ApiKeyUsedRecord("ak_1", "acme", T0),
        RegistrationKeyRecord("rk_1", "acme", "abcdefghij", "1" * 64, "", T0, T0 + 10),
        RedeemRecord("rk_1", "acme", "ag_1", "ed25519:0011223344556677", PK, "fp-1", T0),
        RegistrationKeyRevokeRecord("rk_1", "acme", "rkr_1", T0),
        AgentKeyRecord("acme", "ag_1", 1, "ed25519:8899aabbccddeeff", PK, T0, T0 + 1),
        AgentRevokeRecord("acme", "ag_1", T0, "lost laptop"),
        AgentFingerprintRecord("acme", "ag_1", "fp-2", T0),
        ServiceKeyRecord("processors", "ed25519:0011223344556677", PK, T0),
    ]


@pytest.mark.parametrize("record", samples(), ids=lambda r: type(r).__name__)
def test_round_trip_is_canonical_and_keyed(record: object) -> None:
    key, value = encode_record(record)  # type: ignore[arg-type]
    obj = json.loads(value)
    assert obj["kind"] == record.KIND and obj["v"] == 1  # type: ignore[attr-defined]
    # canonical: keys sorted, no whitespace
    assert value == json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
    assert decode_record(value, key) == record
    assert key == record.key.encode()  # type: ignore[attr-defined]


def test_every_kind_is_covered_by_the_samples() -> None:
    assert {type(r).KIND for r in samples()} == set(RECORD_TYPES)  # type: ignore[attr-defined]


def test_distinct_facts_never_share_a_key() -> None:
    keys = [r.key for r in samples()]  # type: ignore[attr-defined]
    assert len(keys) == len(set(keys))
    # two redeems of one rk and two rotations to one generation keep separate keys (both survive)
    a = RedeemRecord("rk_1", "acme", "ag_1", "k1", PK, "fp", T0)
    b = RedeemRecord("rk_1", "acme", "ag_2", "k2", PK, "fp", T0)
    assert a.key != b.key
    r1 = AgentKeyRecord("acme", "ag_1", 1, "k1", PK, T0, T0)
    r2 = AgentKeyRecord("acme", "ag_1", 1, "k2", PK, T0, T0)
    assert r1.key != r2.key


def test_two_revokes_of_one_registration_key_keep_separate_keys() -> None:
    """Compaction keeps one record per key at the *later* offset; if two revokes shared a key, a
    redeem written between them would lose before compaction and win after it."""
    a = RegistrationKeyRevokeRecord("rk_1", "acme", "rkr_1", T0)
    b = RegistrationKeyRevokeRecord("rk_1", "acme", "rkr_2", T0)
    assert a.key != b.key and a.key.startswith("rk-revoke:rk_1:")


# Values written before the registration_key_revoke kind existed; they must still decode as they are.
OLD_RECORDS = [
    (b"rk:rk_1", b'{"created_at":1700000000000000,"expires_at":1700000000000010,"kind":"registration_key",'
     b'"name":"","prefix":"abcdefghij","rk_id":"rk_1","secret_sha256":"' + b"1" * 64 + b'","tenant_id":"acme",'
     b'"v":1}'),
    (b"rk-redeem:rk_1:ag_1", b'{"agent_id":"ag_1","at":1700000000000000,"fingerprint":"fp-1",'
     b'"key_id":"ed25519:0011223344556677","kind":"registration_redeem",'
     b'"public_key":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=","rk_id":"rk_1","tenant_id":"acme","v":1}'),
    (b"tenant-status:acme", b'{"at":1700000000000000,"kind":"tenant_status","status":"disabled",'
     b'"tenant_id":"acme","v":1}'),
]


@pytest.mark.parametrize(("key", "value"), OLD_RECORDS, ids=lambda x: x.decode()[:20])
def test_records_written_before_the_revoke_kind_still_decode(key: bytes, value: bytes) -> None:
    record = decode_record(value, key)
    assert encode_record(record) == (key, value)  # byte for byte


@pytest.mark.parametrize("mutation", [
    {"revoke_id": ""},
    {"revoke_id": "a:b"},
    {"rk_id": None},
    {"tenant_id": "Bad Tenant"},
    {"at": -1},
    {"agent_id": "ag_1"},
])
def test_bad_registration_key_revokes_are_refused(mutation: dict[str, object]) -> None:
    obj = RegistrationKeyRevokeRecord("rk_1", "acme", "rkr_1", T0).to_json()
    obj.update(mutation)
    with pytest.raises(InvalidRecord):
        decode_record(json.dumps(obj).encode())


def test_kafka_key_must_match_entity() -> None:
    _key, value = encode_record(TenantRecord("acme", 90, T0))
    with pytest.raises(InvalidRecord):
        decode_record(value, b"tenant:other")


@pytest.mark.parametrize("mutation", [
    {"kind": "nope"},
    {"v": 2},
    {"retention_days": 0},
    {"retention_days": "90"},
    {"retention_days": True},
    {"tenant_id": "Bad Tenant"},
    {"tenant_id": None},
    {"extra": 1},
    {"created_at": -1},
])
def test_bad_tenant_records_are_refused(mutation: dict[str, object]) -> None:
    obj = TenantRecord("acme", 90, T0).to_json()
    obj.update(mutation)
    with pytest.raises(InvalidRecord):
        decode_record(json.dumps(obj).encode())


@pytest.mark.parametrize("mutation", [
    {"public_key": "not base64!"},
    {"public_key": "AAAA"},  # 3 bytes, not 32
    {"fingerprint": ""},
    {"agent_id": "a:b"},
    {"rk_id": ""},
])
def test_bad_redeem_records_are_refused(mutation: dict[str, object]) -> None:
    obj = RedeemRecord("rk_1", "acme", "ag_1", "k1", PK, "fp", T0).to_json()
    obj.update(mutation)
    with pytest.raises(InvalidRecord):
        decode_record(json.dumps(obj).encode())


def test_unknown_scope_and_bad_hash_refused() -> None:
    with pytest.raises(InvalidRecord):
        ApiKeyRecord("ak_1", "acme", "abcdefghij", "0" * 64, ("root",), "", T0, None, None)
    with pytest.raises(InvalidRecord):
        ApiKeyRecord("ak_1", "acme", "abcdefghij", "XYZ", ("*",), "", T0, None, None)


@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.binary(max_size=200))
def test_garbage_never_crashes_decoder(data: bytes) -> None:
    with contextlib.suppress(InvalidRecord):
        decode_record(data)


_VALUES = st.one_of(st.none(), st.integers(), st.text(max_size=5), st.booleans())


@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.sampled_from(["kind", "v", "tenant_id", "retention_days", "created_at", "x"]), _VALUES)
def test_any_field_mutation_is_parsed_or_refused(name: str, value: object) -> None:
    obj = TenantRecord("acme", 90, T0).to_json()
    obj[name] = value
    try:
        rec = decode_record(json.dumps(obj).encode())
    except InvalidRecord:
        return
    assert isinstance(rec, TenantRecord)
    assert rec.to_json() == obj  # accepted only if it is a faithful, valid record


def test_an_api_key_record_holds_only_the_hash() -> None:
    secret = new_api_key_secret()
    rec = ApiKeyRecord("ak_1", "acme", secret[8:18], hash_secret(secret), ("*",), "", T0, None, None)
    _, value = encode_record(rec)
    assert secret.encode() not in value
    assert secret[8:].encode() not in value
    assert hash_secret(secret).encode() in value
