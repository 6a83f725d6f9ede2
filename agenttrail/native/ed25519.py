"""Ed25519 signing and verification through the Rust library built from ``native/ed25519-rs``
(ctypes).

``Signer`` signs with a seed's expanded secret key held by the library (zeroized when freed): the
same bytes as OpenSSL's signature, since Ed25519 signing is deterministic, for about 0.6 of its time
here (as fast as libsodium's signing).

One signature costs about 0.6 of libsodium's time here, and each signature of a batch checked at
once about a sixth. The rule is RFC 8032's cofactored equation with libsodium's strictness (see the
crate's lib.rs), identical for one signature and for a batch, so a batch answer never differs from
the one-by-one answers. ``lib`` is None when the library was not built (no Rust toolchain at
bootstrap) or when ``AGENTTRAIL_NATIVE=0``; ``agenttrail.crypto`` then verifies with libsodium.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Sequence
from pathlib import Path

LIB_NAME = "libagenttrail_ed25519.so"
ABI_VERSION = 2
MAX_CACHED_KEYS = 65_536

lib: ctypes.CDLL | None = None
why_off = ""


def _load() -> ctypes.CDLL | None:
    global why_off
    if os.environ.get("AGENTTRAIL_NATIVE", "1") == "0":
        why_off = "AGENTTRAIL_NATIVE=0"
        return None
    path = Path(__file__).with_name(LIB_NAME)
    try:
        found = ctypes.CDLL(str(path))
    except OSError:
        why_off = "not built"
        return None
    if found.agenttrail_ed25519_abi() != ABI_VERSION:
        why_off = "stale build (ABI version differs)"
        return None
    found.agenttrail_ed25519_key_new.restype = ctypes.c_void_p
    found.agenttrail_ed25519_key_new.argtypes = [ctypes.c_char_p]
    found.agenttrail_ed25519_key_free.argtypes = [ctypes.c_void_p]
    found.agenttrail_ed25519_verify.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t,
                                                ctypes.c_char_p]
    found.agenttrail_ed25519_verify_batch.argtypes = [ctypes.c_size_t, ctypes.c_void_p, ctypes.c_char_p,
                                                      ctypes.c_void_p, ctypes.c_char_p]
    found.agenttrail_ed25519_signer_new.restype = ctypes.c_void_p
    found.agenttrail_ed25519_signer_new.argtypes = [ctypes.c_char_p]
    found.agenttrail_ed25519_signer_free.argtypes = [ctypes.c_void_p]
    found.agenttrail_ed25519_signer_public.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    found.agenttrail_ed25519_sign.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p]
    return found


lib = _load()


class _Key:
    """A checked, decoded public key owned by the library; freed with this object."""

    __slots__ = ("handle",)

    def __init__(self, handle: int) -> None:
        self.handle = handle

    def __del__(self) -> None:
        if lib is not None:
            lib.agenttrail_ed25519_key_free(self.handle)


class Signer:
    """The signer of one 32-byte seed: the library holds its expanded secret key (the clamped scalar
    and the nonce prefix), zeroized when this object is freed; no copy of the seed is kept here.
    Shared, never copied or pickled (a copy would free the same handle twice)."""

    __slots__ = ("_handle", "public_key")

    def __init__(self, seed: bytes) -> None:
        if lib is None:
            raise RuntimeError(f"the Rust Ed25519 library is off ({why_off})")
        if type(seed) is not bytes or len(seed) != 32:
            raise ValueError("an Ed25519 seed is 32 bytes")
        self._handle: int = lib.agenttrail_ed25519_signer_new(seed)
        out = ctypes.create_string_buffer(32)
        lib.agenttrail_ed25519_signer_public(self._handle, out)
        self.public_key: bytes = out.raw

    def sign(self, message: bytes) -> bytes:
        """The 64-byte Ed25519 signature (RFC 8032, pure) of ``message`` (bytes only)."""
        out = ctypes.create_string_buffer(64)
        lib.agenttrail_ed25519_sign(self._handle, message, len(message), out)  # type: ignore[union-attr]
        return out.raw

    def __copy__(self) -> Signer:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> Signer:
        return self

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("a native Ed25519 signer holds a secret key: it is not pickled")

    def __repr__(self) -> str:  # never print key material
        return f"Signer(public_key={self.public_key.hex()!r})"

    def __del__(self) -> None:
        handle = getattr(self, "_handle", None)
        if lib is not None and handle:
            lib.agenttrail_ed25519_signer_free(handle)


_keys: dict[bytes, _Key | None] = {}
_keys_lock = threading.Lock()


def key(public_key: bytes) -> _Key | None:
    """The decoded key, or None when these 32 bytes are not an acceptable Ed25519 public key
    (not a canonical point encoding, of small order, or with a small-order component)."""
    try:
        return _keys[public_key]
    except KeyError:
        pass
    assert lib is not None
    handle = lib.agenttrail_ed25519_key_new(public_key) if len(public_key) == 32 else None
    found = _Key(handle) if handle else None
    with _keys_lock:  # bounded: a flood of distinct keys decodes each time instead of growing
        if len(_keys) < MAX_CACHED_KEYS:
            _keys[public_key] = found
    return found


def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    k = key(public_key)
    if k is None or len(signature) != 64:
        return False
    assert lib is not None
    return lib.agenttrail_ed25519_verify(k.handle, message, len(message), signature) == 1


def verify_all(public_keys: Sequence[bytes], messages: Sequence[bytes], signatures: Sequence[bytes]) -> bool:
    """True iff every signature is valid, checked as one batch."""
    n = len(signatures)
    handles = []
    for pk, sig in zip(public_keys, signatures, strict=True):
        k = key(pk)
        if k is None or len(sig) != 64:
            return False
        handles.append(k)
    ends = []
    end = 0
    for m in messages:
        end += len(m)
        ends.append(end)
    assert lib is not None
    keys_arr = (ctypes.c_void_p * n)(*(k.handle for k in handles))
    ends_arr = (ctypes.c_size_t * n)(*ends)
    ok = lib.agenttrail_ed25519_verify_batch(n, keys_arr, b"".join(messages), ends_arr, b"".join(signatures))
    if ok < 0:
        raise OSError("no randomness for batch verification")
    return ok == 1
