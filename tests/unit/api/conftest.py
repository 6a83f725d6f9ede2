"""One chDB store + LanceDB table per test package (chDB is one engine per process), seeded with
two tenants, and a factory for apps over them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from aiohttp import web
from api_support import World, seed_world

from agenttrail.api.app import create_app
from agenttrail.config import Settings
from agenttrail.sinks.clickhouse.schema import open_store
from agenttrail.sinks.clickhouse.store import ClickHouseStore
from agenttrail.sinks.lancedb import LanceStore


@dataclass
class Seeded:
    store: ClickHouseStore
    lance: LanceStore
    world: World


@pytest.fixture(scope="package")
def seeded(tmp_path_factory: pytest.TempPathFactory, chdb_url: str) -> Iterator[Seeded]:
    root = tmp_path_factory.mktemp("api")
    store = open_store(chdb_url, database="api")
    lance = LanceStore(str(root / "lancedb"), dim=32)
    try:
        yield Seeded(store, lance, seed_world(store, lance))
    finally:
        store.close()


@pytest.fixture()
def make_app(seeded: Seeded, tmp_path_factory: pytest.TempPathFactory) -> Callable[..., web.Application]:
    def factory(**overrides: object) -> web.Application:
        disabled = bool(overrides.pop("auth_disabled", False))
        settings = Settings(home=tmp_path_factory.mktemp("home"), auth_disabled=disabled)
        options: dict[str, object] = {
            "store": seeded.store, "lance": seeded.lance, "embedder": seeded.world.embedder,
            "control": seeded.world.control, "cursor_key": b"k" * 32, "rate_per_s": 1000.0, "burst": 1000,
        }
        options.update(overrides)
        return create_app(settings, **options)  # type: ignore[arg-type]

    return factory
