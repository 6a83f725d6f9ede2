"""Shared fixtures. One real KRaft broker per pytest session, on free ports, always stopped."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from agenttrail.config import Settings


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[object]:
    """The LocalBroker of this test session (started lazily: unit tests never pay for it)."""
    from agenttrail.kafka.broker import temporary_broker

    external = os.environ.get("AGENTTRAIL_TEST_KAFKA_BOOTSTRAP")
    if external:
        pytest.skip("broker object not available with an external cluster")
    with temporary_broker("agenttrail-kafka-") as broker:
        yield broker


@pytest.fixture(scope="session")
def kafka_bootstrap(request: pytest.FixtureRequest) -> str:
    external = os.environ.get("AGENTTRAIL_TEST_KAFKA_BOOTSTRAP")
    if external:
        return external
    broker = request.getfixturevalue("kafka_broker")
    return broker.bootstrap  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def chdb_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The one embedded ClickHouse path of this pytest process.

    chDB is one engine per process and stays bound to the first path it opened (even after the
    client is closed), so every in-process test shares this path and uses a database of its own."""
    return f"chdb://{tmp_path_factory.mktemp('chdb')}"


@pytest.fixture()
def settings(tmp_path: Path) -> Settings:
    """Settings for one test: everything under tmp_path, no broker address yet."""
    return Settings(home=tmp_path / ".agenttrail", clickhouse_url=f"chdb:///{tmp_path}/clickhouse",
                    lancedb_uri=str(tmp_path / "lancedb"), partitions=4)


@pytest.fixture()
def kafka_settings(settings: Settings, kafka_bootstrap: str) -> Settings:
    return settings.with_overrides(kafka_bootstrap=kafka_bootstrap)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Everything under tests/integration needs the broker.
    for item in items:
        if "tests/integration/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.kafka)
