"""schemathesis against /openapi.json: no 5xx, status codes, content types and bodies match the spec.

The document is generated from the route table; the app runs over the seeded store on a free
127.0.0.1 port in a background thread (schemathesis loads ASGI/WSGI apps in-process, not aiohttp).
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from agenttrail.api.app import RUNNER_OPTIONS, route_table
from agenttrail.api.openapi import build_document

schema = schemathesis.openapi.from_dict(build_document(route_table(with_audit=True)))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(seeded: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    from agenttrail.api.app import create_app
    from agenttrail.config import Settings

    world = seeded.world
    app = create_app(Settings(home=tmp_path_factory.mktemp("st")), store=seeded.store, lance=seeded.lance,
                     embedder=world.embedder, control=world.control, rate_per_s=1e6, burst=1_000_000,
                     with_audit=True)
    port = _free_port()
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, **RUNNER_OPTIONS)
    ready = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(20), "the API did not start"
    try:
        yield f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {world.a.keys['*']}"}
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(20)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(20)


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_openapi(case: Any, served: tuple[str, dict[str, str]]) -> None:
    base_url, headers = served
    case.call_and_validate(base_url=base_url, headers=headers, checks=CHECKS)


def test_served_document_is_the_generated_one(served: tuple[str, dict[str, str]]) -> None:
    import json
    import urllib.request

    with urllib.request.urlopen(served[0] + "/openapi.json") as resp:
        assert json.load(resp) == json.loads(json.dumps(build_document(route_table(with_audit=True))))
