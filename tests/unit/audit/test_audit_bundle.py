"""Session bundles: export, then verify offline; every tampering of the bundle fails it."""

from __future__ import annotations

import copy
import json

import pytest

from agenttrail.audit.bench import Dataset, service_key, synthetic_dataset
from agenttrail.audit.bundle import build_bundle, verify_bundle
from agenttrail.errors import VerificationError
from agenttrail.processors.checkpoint import build_checkpoint

TENANT = "bnd"


@pytest.fixture(scope="module")
def data() -> Dataset:
    return synthetic_dataset(300, tenant_id=TENANT, sessions=5, agents=2)


@pytest.fixture(scope="module")
def bundle(data: Dataset) -> dict:
    b = build_bundle(TENANT, "s-00003", data.records, data.keys, data.heads(), [data.checkpoint],
                     [data.service_key.verifier], data.service_key, 42)
    return json.loads(json.dumps(b))  # through the file format


def test_bundle_verifies_offline(bundle: dict, data: Dataset) -> None:
    report = verify_bundle(bundle, [data.service_key.vkey])
    assert report.ok, report.failures
    assert (report.events, report.signatures_checked, report.checkpoints_checked) == (60, 60, 1)
    assert verify_bundle(bundle).ok  # trusting the bundled key works too, with a note
    assert verify_bundle(bundle).notes


def tampered(bundle: dict, change) -> dict:
    b = copy.deepcopy(bundle)
    change(b)
    return b


@pytest.mark.parametrize("change,check", [
    (lambda b: b["records"][7].update(type="error"), "chain"),
    (lambda b: b["records"].pop(), "checkpoint"),
    (lambda b: b["records"].pop(10), "chain"),
    (lambda b: b["inclusion"]["proof"].reverse(), "checkpoint"),
    (lambda b: b["agent_keys"][0].update(valid_until_ts=0), "key"),
])
def test_tampered_bundle_fails(bundle: dict, data: Dataset, change, check: str) -> None:
    report = verify_bundle(tampered(bundle, change), [data.service_key.vkey])
    assert not report.ok
    assert check in {f.check for f in report.failures}
    assert "bundle" in {f.check for f in report.failures}  # the bundle signature no longer holds


def test_bundle_from_another_signer_is_refused_when_pinned(bundle: dict, data: Dataset) -> None:
    intruder = service_key(label="intruder")
    report = verify_bundle(bundle, [intruder.vkey])
    assert {(f.check, f.kind) for f in report.failures} >= {("bundle", "untrusted_signer")}


def test_export_needs_a_covering_checkpoint(data: Dataset) -> None:
    stale = build_checkpoint(TENANT, {}, None, 1, data.service_key)
    with pytest.raises(VerificationError):
        build_bundle(TENANT, "s-00001", data.records, data.keys, data.heads(), [stale],
                     [data.service_key.verifier], data.service_key, 1)


def test_garbage_is_a_failure_not_a_crash() -> None:
    assert not verify_bundle({"format": "agenttrail-bundle/v1"}).ok
    assert not verify_bundle([1, 2]).ok
