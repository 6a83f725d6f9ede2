"""Fixtures shared by the integration tests (the broker ones are in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agenttrail.config import Settings
from agenttrail.control.service import Registry


@pytest.fixture()
def registry(kafka_settings: Settings) -> Iterator[Registry]:
    """A live control-plane view on the session broker (closed after the test)."""
    reg = Registry(kafka_settings, kafka_settings.kafka_bootstrap or "").start()
    yield reg
    reg.close()
