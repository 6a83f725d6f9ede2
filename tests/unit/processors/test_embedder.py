"""Embedders: the offline MiniLM model (reference cosines, no torch, no network), the HTTP embedder."""

from __future__ import annotations

import asyncio
import importlib.util
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from aiohttp import web

from agenttrail.config import Settings
from agenttrail.errors import ConfigError
from agenttrail.processors.embedder import (
    MINILM_DIM,
    EmbedderError,
    FakeEmbedder,
    MiniLMEmbedder,
    OpenAIEmbedder,
    load_minilm,
    make_embedder,
    parse_embedder_spec,
)


@pytest.fixture(scope="module")
def minilm() -> Iterator[MiniLMEmbedder]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        embedder = MiniLMEmbedder()
        embedder.warm_up()
        yield embedder


def cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


# Published all-MiniLM-L6-v2 similarities (sentence-transformers documentation).
REFERENCE = [
    ("The weather is lovely today.", "It's so sunny outside!", 0.666),
    ("The weather is lovely today.", "He drove to the stadium.", 0.105),
    ("The new movie is awesome", "The new movie is so great", 0.894),
]


@pytest.mark.parametrize(("a", "b", "expected"), REFERENCE)
def test_reference_cosines(minilm: MiniLMEmbedder, a: str, b: str, expected: float) -> None:
    va, vb = minilm.embed([a, b])
    assert cos(va, vb) == pytest.approx(expected, abs=0.01)


def test_vectors_are_unit_float32_of_384(minilm: MiniLMEmbedder) -> None:
    out = minilm.embed(["one", "two words", ""])
    assert out.shape == (3, MINILM_DIM) and out.dtype == np.float32
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert minilm.embed([]).shape == (0, MINILM_DIM)


def test_no_torch_anywhere(minilm: MiniLMEmbedder) -> None:
    minilm.embed(["anything"])
    assert importlib.util.find_spec("torch") is None
    assert "torch" not in sys.modules and "sentence_transformers" not in sys.modules


def test_loading_needs_no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model load tried to open a network connection")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    runtime = load_minilm(threads=1)  # uncached: a real second load
    assert {"input_ids", "attention_mask"} <= runtime.input_names


def test_a_tampered_model_is_refused(tmp_path: Path) -> None:
    fake_model = tmp_path / "model.onnx"
    fake_model.write_bytes(b"not the pinned model")
    with pytest.raises(ConfigError, match="sha256"):
        load_minilm(model_path=fake_model)


def test_a_tampered_tokenizer_is_refused() -> None:
    with pytest.raises(ConfigError, match="sha256"):
        load_minilm(tokenizer_sha256="0" * 64)


def test_padding_does_not_change_a_vector(minilm: MiniLMEmbedder) -> None:
    short = "database timeout"
    batch = minilm.embed([short, "a much longer sentence that forces padding of the short one " * 3])
    alone = minilm.embed([short])
    assert np.allclose(batch[0], alone[0], atol=1e-5)


def test_reads_up_to_256_tokens_not_128(minilm: MiniLMEmbedder) -> None:
    words = [f"w{i}" for i in range(400)]
    base = " ".join(words[:100])  # ~200 tokens: past the shipped tokenizer's 128 cut
    changed_after_128 = base + " " + " ".join(words[100:120])
    assert cos(*minilm.embed([base, changed_after_128])) < 0.9999  # tokens 128..256 are read
    beyond = " ".join(words)  # far past 256 tokens: the tail beyond the cut is ignored
    assert np.allclose(*minilm.embed([beyond, beyond + " totally different ending words here"]), atol=1e-6)


def test_concurrent_use_gives_the_same_vectors(minilm: MiniLMEmbedder) -> None:
    texts = [f"event {i} from agent {i % 7}" for i in range(40)]
    expected = minilm.embed(texts)
    results: dict[int, np.ndarray] = {}

    def work(n: int) -> None:
        results[n] = MiniLMEmbedder().embed(texts)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(np.allclose(results[n], expected, atol=1e-6) for n in range(4))


# --- factory and spec ---


def test_default_embedder_is_minilm() -> None:
    assert isinstance(make_embedder(Settings()), MiniLMEmbedder)
    with pytest.raises(ConfigError):
        make_embedder(Settings(extra={"embedder_threads": "0"}))


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("minilm", ("minilm", "", "")),
        ("openai:http://127.0.0.1:8080/v1:text-embedding-3-small",
         ("openai", "http://127.0.0.1:8080/v1", "text-embedding-3-small")),
        ("openai:https://api.example.com/v1:m", ("openai", "https://api.example.com/v1", "m")),
    ],
)
def test_parse_spec(spec: str, expected: tuple[str, str, str]) -> None:
    assert parse_embedder_spec(spec) == expected


@pytest.mark.parametrize("spec", ["fake", "openai:", "openai:ftp://x:m", "openai:http://host:8080/v1",
                                  "openai:http://host:m/x"])
def test_bad_specs_are_config_errors(spec: str) -> None:
    with pytest.raises(ConfigError):
        parse_embedder_spec(spec)


def test_fake_embedder_is_deterministic_and_never_the_default() -> None:
    a, b = FakeEmbedder(8).embed(["x", "y"]), FakeEmbedder(8).embed(["x", "y"])
    assert np.array_equal(a, b) and not np.allclose(a[0], a[1])
    assert not isinstance(make_embedder(Settings()), FakeEmbedder)


# --- OpenAI-compatible HTTP, against a tiny local server ---


@pytest.fixture()
async def openai_server(aiohttp_server):  # type: ignore[no-untyped-def]
    seen: list[dict] = []

    async def embeddings(request: web.Request) -> web.Response:
        body = await request.json()
        seen.append({"body": body, "auth": request.headers.get("Authorization")})
        if body["model"] == "broken":
            return web.json_response({"error": "nope"}, status=500)
        if body["model"] == "short":
            return web.json_response({"data": []})
        data = [{"index": i, "embedding": [float(len(t)), 1.0, 0.0]} for i, t in enumerate(body["input"])]
        return web.json_response({"object": "list", "data": list(reversed(data))})

    app = web.Application()
    app.router.add_post("/v1/embeddings", embeddings)
    server = await aiohttp_server(app, host="127.0.0.1")
    return f"http://127.0.0.1:{server.port}/v1", seen


async def test_openai_embedder_posts_and_normalises(openai_server) -> None:  # type: ignore[no-untyped-def]
    base_url, seen = openai_server
    embedder = make_embedder(Settings(embedder=f"openai:{base_url}:tiny", extra={"embedder_api_key": "sk-x"}))
    assert isinstance(embedder, OpenAIEmbedder)
    out = await asyncio.to_thread(embedder.embed, ["abc", "a"])
    assert seen[0]["body"] == {"model": "tiny", "input": ["abc", "a"]}
    assert seen[0]["auth"] == "Bearer sk-x"
    expected = np.array([[3.0, 1.0, 0.0], [1.0, 1.0, 0.0]])
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    assert np.allclose(out, expected, atol=1e-6)  # reordered by index, L2-normalised
    assert embedder.dim == 3 and len(seen) == 1


async def test_openai_embedder_errors(openai_server) -> None:  # type: ignore[no-untyped-def]
    base_url, _ = openai_server
    with pytest.raises(EmbedderError, match="500"):
        await asyncio.to_thread(OpenAIEmbedder(base_url, "broken").embed, ["x"])
    with pytest.raises(EmbedderError, match="expected 1 vectors"):
        await asyncio.to_thread(OpenAIEmbedder(base_url, "short").embed, ["x"])
    with pytest.raises(EmbedderError, match="unreachable"):
        await asyncio.to_thread(OpenAIEmbedder("http://127.0.0.1:9/v1", "m", timeout_s=2).embed, ["x"])
