"""The pure parts of the Registry shell and the agent-side helpers."""

from __future__ import annotations

import re

from agenttrail.config import Settings
from agenttrail.control.credentials import lookup_prefix, new_api_key_secret, new_id, new_rk_secret
from agenttrail.control.registration import machine_fingerprint
from agenttrail.control.service import registry_topic_spec, tenant_topic_specs
from agenttrail.kafka.topics import REGISTRY_TOPIC


def test_registry_topic_is_compacted_with_one_partition() -> None:
    spec = registry_topic_spec()
    assert (spec.name, spec.partitions, spec.config["cleanup.policy"]) == (REGISTRY_TOPIC, 1, "compact")


def test_tenant_topics_follow_settings_and_policy() -> None:
    specs = tenant_topic_specs(Settings(partitions=6), "acme", 3)
    assert [s.name for s in specs] == ["agenttrail.acme.events", "agenttrail.acme.ledger"]
    assert {s.partitions for s in specs} == {6}
    assert {s.config["retention.ms"] for s in specs} == {str(3 * 86_400_000)}


def test_secrets_are_random_well_formed_and_distinct() -> None:
    api = {new_api_key_secret() for _ in range(200)}
    rks = {new_rk_secret() for _ in range(200)}
    assert len(api) == 200 and len(rks) == 200
    assert all(re.fullmatch(r"at_live_[a-z2-7]{52}", s) for s in api)
    assert all(re.fullmatch(r"rk_[a-z2-7]{52}", s) for s in rks)
    assert len({lookup_prefix(s, "at_live_") for s in api}) == 200
    assert len({new_id("ag") for _ in range(200)}) == 200


def test_machine_fingerprint_is_stable_and_hashed() -> None:
    fp = machine_fingerprint()
    assert fp == machine_fingerprint()
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", fp)
