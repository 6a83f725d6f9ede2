from __future__ import annotations

import base64
import hashlib
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from agenttrail.config import Settings
from agenttrail.errors import VerificationError
from agenttrail.processors.checkpoint import NoteSignature
from agenttrail.processors.service_key import (
    KEY_FILE_NAME,
    NoteVerifier,
    ServiceKey,
    load_or_create_service_key,
    note_key_hash,
    service_key_path,
    validate_key_name,
)

# The example key and note of the reference implementation (golang.org/x/mod/sumdb/note docs and
# tests); Ed25519 is deterministic, so signing the text must reproduce the signature byte for byte.
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_SIG_LINE = (
    "\u2014 PeterNeumann "
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)


def go_key() -> ServiceKey:
    raw = base64.b64decode(GO_SKEY.split("+", 4)[4])
    assert raw[0] == 1
    return ServiceKey.from_seed(raw[1:], name="PeterNeumann")


def test_reference_key_hash_and_verifier_key() -> None:
    key = go_key()
    assert key.key_hash.hex() == "c74f20a3"
    assert key.vkey == GO_VKEY
    assert note_key_hash("PeterNeumann", key.public_key) == hashlib.sha256(
        b"PeterNeumann\n\x01" + key.public_key
    ).digest()[:4]


def test_reference_signature_line_reproduced_byte_for_byte() -> None:
    key = go_key()
    sig = NoteSignature(key.name, key.key_hash, key.sign(GO_TEXT.encode()))
    assert sig.line() == GO_SIG_LINE


def test_verifier_from_reference_vkey_verifies_reference_signature() -> None:
    verifier = NoteVerifier.from_vkey(GO_VKEY)
    assert verifier.name == "PeterNeumann"
    assert verifier.key_hash.hex() == "c74f20a3"
    blob = base64.b64decode(GO_SIG_LINE.split(" ")[2])
    assert verifier.verify(GO_TEXT.encode(), blob[4:])
    assert not verifier.verify(GO_TEXT.encode() + b"x", blob[4:])


@pytest.mark.parametrize(
    "vkey",
    [
        "PeterNeumann+c74f20a3",  # missing key
        "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # wrong hash
        "PeterNeumann+c74f20a3+AhpC2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # wrong algorithm byte
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10",  # short key
        "PeterNeumann+zz4f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # not hex
        "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # space in name
        "PeterNeumann+c74f20a3+!!!",
    ],
)
def test_malformed_verifier_keys_are_rejected(vkey: str) -> None:
    with pytest.raises(VerificationError):
        NoteVerifier.from_vkey(vkey)


@pytest.mark.parametrize("name", ["", "a b", "a+b", "tab\tname", "new\nline"])
def test_invalid_key_names(name: str) -> None:
    with pytest.raises(ValueError):
        validate_key_name(name)
    with pytest.raises(ValueError):
        ServiceKey.generate(name)


def test_load_or_create_creates_0600_file_once(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    first = load_or_create_service_key(settings)
    path = service_key_path(settings)
    assert path == tmp_path / "home" / KEY_FILE_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    second = load_or_create_service_key(settings)
    assert second.public_key == first.public_key
    assert second.vkey == first.vkey
    assert [p.name for p in path.parent.iterdir()] == [KEY_FILE_NAME]  # no temp files left
    assert "PRIVATE" not in repr(first) and first.key_hash.hex() in repr(first)


def test_load_or_create_keeps_an_existing_key(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    key = load_or_create_service_key(settings, name="svc-a")
    again = load_or_create_service_key(settings, name="svc-b")  # the name is not stored in the file
    assert again.public_key == key.public_key and again.name == "svc-b"
    assert again.key_hash != key.key_hash


def test_concurrent_first_start_agrees_on_one_key(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "fresh")
    with ThreadPoolExecutor(max_workers=8) as pool:
        keys = list(pool.map(lambda _: load_or_create_service_key(settings), range(16)))
    assert len({k.public_key for k in keys}) == 1
    assert [p.name for p in (tmp_path / "fresh").iterdir()] == [KEY_FILE_NAME]
