"""Signed per-tenant checkpoints and retention anchors: C2SP tlog-checkpoint in a C2SP signed note.

Checkpoint (value on `agenttrail.checkpoints`, key = tenant)::

    agenttrail/<tenant>                     origin
    <tree size>                             number of session heads (decimal)
    <base64 root>                           RFC 6962 Merkle root over the session heads
    prev <base64 SHA-256 of the previous checkpoint's note text>   (32 zero bytes for the first)
    time <epoch micros>
    events <total chained events = sum of the chain lengths>
                                            (blank line)
    — agenttrail-service <base64(4-byte key hash ‖ 64-byte Ed25519 signature)>

Retention anchor: origin `agenttrail/<tenant>/anchor` (so it can never be read as a checkpoint),
same size/root lines, then `prev`, `time`, `cut <micros>` and one `head <length> <base64 head>
<session_id>` line per session: a signed statement of every session head when the cut was taken.

Merkle leaves, one per session, sorted by session_id (UTF-8 byte order):
    leaf data = UTF-8(session_id) ‖ 0x00 ‖ chain length (8 bytes, big-endian) ‖ head (32 bytes)
(the 40-byte fixed tail makes the encoding injective even if a session id contains 0x00).
The signature covers the note text: every body line including its final newline.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from hashlib import sha256

from agenttrail.errors import VerificationError
from agenttrail.kafka.topics import TENANT_ID_RE, validate_tenant_id
from agenttrail.processors.chain import GENESIS_HEAD, HASH_SIZE, ChainState
from agenttrail.processors.merkle import inclusion_proof, merkle_root
from agenttrail.processors.service_key import KEY_HASH_LEN, NoteVerifier, ServiceKey

ORIGIN_PREFIX = "agenttrail/"
ANCHOR_SUFFIX = "/anchor"
SIG_PREFIX = "\u2014 "  # em dash + space
MAX_NOTE_BYTES = 16 << 20
MAX_SIGNATURES = 100
_DECIMAL_RE = re.compile(r"^(0|[1-9][0-9]{0,18})$")
Heads = Mapping[str, tuple[int, bytes]]  # session_id -> (chain length, head)


class MalformedNote(VerificationError):
    """Text that is not a well-formed agenttrail checkpoint or anchor."""

    code = "malformed_checkpoint"


# -- the tree over session heads ----------------------------------------------------------------
def head_leaf(session_id: str, length: int, head: bytes) -> bytes:
    if len(head) != HASH_SIZE or not 0 <= length < 1 << 63:
        raise ValueError(f"bad session head for {session_id!r}: length {length}, {len(head)}-byte head")
    return session_id.encode() + b"\x00" + length.to_bytes(8, "big") + head


def sorted_heads(heads: Heads) -> list[tuple[str, int, bytes]]:
    return [(sid, heads[sid][0], heads[sid][1]) for sid in sorted(heads, key=str.encode)]


def heads_root(heads: Heads) -> bytes:
    return merkle_root([head_leaf(*item) for item in sorted_heads(heads)])


def head_inclusion_proof(heads: Heads, session_id: str) -> tuple[int, list[bytes]]:
    """(leaf index, audit path) proving one session's head under `heads_root(heads)`."""
    items = sorted_heads(heads)
    index = next((i for i, item in enumerate(items) if item[0] == session_id), None)
    if index is None:
        raise KeyError(session_id)
    return index, inclusion_proof([head_leaf(*item) for item in items], index)


# -- signed-note plumbing -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class NoteSignature:
    name: str
    key_hash: bytes
    signature: bytes

    def line(self) -> str:
        return f"{SIG_PREFIX}{self.name} {base64.b64encode(self.key_hash + self.signature).decode()}\n"


def _sign(body: str, signer: ServiceKey) -> NoteSignature:
    return NoteSignature(signer.name, signer.key_hash, signer.sign(body.encode()))


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


def _unb64(text: str, what: str, size: int | None = HASH_SIZE) -> bytes:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedNote(f"{what} is not base64", {"field": what}) from None
    if (size is not None and len(raw) != size) or _b64(raw) != text:
        raise MalformedNote(f"{what} is not a canonical {size}-byte base64 value", {"field": what})
    return raw


def _decimal(text: str, what: str) -> int:
    if not _DECIMAL_RE.fullmatch(text):
        raise MalformedNote(f"{what} is not a decimal number", {"field": what, "value": text[:40]})
    return int(text)


def _split_note(text: str | bytes) -> tuple[str, list[str], tuple[NoteSignature, ...]]:
    """(note text, its lines, signatures); strict about the framing."""
    if isinstance(text, bytes | bytearray):
        if len(text) > MAX_NOTE_BYTES:
            raise MalformedNote("note too large", {"bytes": len(text)})
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedNote("note is not UTF-8") from None
    if len(text) > MAX_NOTE_BYTES:
        raise MalformedNote("note too large", {"chars": len(text)})
    body, sep, sig_text = text.partition("\n\n")
    if not sep or not sig_text.endswith("\n") or "\r" in text:
        raise MalformedNote("note framing: expected body, blank line, signature lines")
    body += "\n"
    lines = body[:-1].split("\n")
    if any(not line.isprintable() for line in lines):
        raise MalformedNote("note has control characters")
    signatures: list[NoteSignature] = []
    for raw in sig_text[:-1].split("\n"):
        if not raw.startswith(SIG_PREFIX) or raw.count(" ") != 2:
            raise MalformedNote("malformed signature line", {"line": raw[:80]})
        name, _, blob = raw[len(SIG_PREFIX) :].partition(" ")
        data = _unb64(blob, "signature", None)
        if not name or "+" in name or len(data) <= KEY_HASH_LEN:
            raise MalformedNote("malformed signature line", {"line": raw[:80]})
        signatures.append(NoteSignature(name, data[:KEY_HASH_LEN], data[KEY_HASH_LEN:]))
    if not signatures or len(signatures) > MAX_SIGNATURES:
        raise MalformedNote("a note needs 1 to 100 signatures", {"signatures": len(signatures)})
    return body, lines, tuple(signatures)


def _verify_signatures(
    body: str,
    signatures: tuple[NoteSignature, ...],
    keys: Iterable[NoteVerifier | str],
    where: dict[str, object],
) -> str:
    """Name of a trusted key with a valid signature; raise otherwise (fail closed)."""
    verifiers = [NoteVerifier.from_vkey(k) if isinstance(k, str) else k for k in keys]
    if not verifiers:
        raise VerificationError("no trusted keys given", where)
    message = body.encode()
    good: str | None = None
    for sig in signatures:
        for verifier in verifiers:
            if (sig.name, sig.key_hash) != (verifier.name, verifier.key_hash):
                continue
            if not verifier.verify(message, sig.signature):
                raise VerificationError("bad signature", {**where, "key": verifier.name})
            good = verifier.name
    if good is None:
        signers = [s.name for s in signatures]
        raise VerificationError("not signed by a trusted key", {**where, "signers": signers})
    return good


def _origin_tenant(origin: str, suffix: str) -> str:
    if not origin.startswith(ORIGIN_PREFIX) or not origin.endswith(suffix):
        raise MalformedNote("unexpected origin", {"origin": origin[:80]})
    tenant = origin[len(ORIGIN_PREFIX) : len(origin) - len(suffix)]
    if not TENANT_ID_RE.fullmatch(tenant):
        raise MalformedNote("origin has an invalid tenant", {"origin": origin[:80]})
    return tenant


def _ext(line: str, key: str) -> str:
    name, sep, value = line.partition(" ")
    if name != key or not sep:
        raise MalformedNote(f"expected a '{key} ' line", {"line": line[:80]})
    return value


def _check_prev(kind: str, where: dict[str, object], prev: bytes, time: int, previous: object) -> None:
    if previous is None:
        return
    if isinstance(previous, bytes):
        expected, prev_time = previous, None
    else:
        expected, prev_time = previous.hash, previous.time  # type: ignore[attr-defined]
        if previous.origin != where["origin"]:  # type: ignore[attr-defined]
            raise VerificationError(f"previous {kind} is for another origin", where)
    if prev != expected:
        link = {**where, "expected": expected.hex(), "actual": prev.hex()}
        raise VerificationError(f"{kind} does not link to the previous one", link)
    if prev_time is not None and time < prev_time:
        raise VerificationError(f"{kind} time goes backwards", {**where, "previous_time": prev_time})


class _SignedNote:
    """What checkpoints and anchors share: a text body, its hash (the next note's `prev`), and the
    signed-note text (body, blank line, signature lines)."""

    __slots__ = ()

    def body(self) -> str:
        raise NotImplementedError

    def _common_lines(self) -> str:
        """Origin, size, root, prev and time: the first five lines of both kinds of note."""
        n = self  # type: ignore[assignment]
        return f"{n.origin}\n{n.size}\n{_b64(n.root)}\nprev {_b64(n.prev)}\ntime {n.time}\n"  # type: ignore[attr-defined]

    @property
    def hash(self) -> bytes:
        """SHA-256 of the note body: the next note's `prev`."""
        return sha256(self.body().encode()).digest()

    def to_text(self) -> str:
        return self.body() + "\n" + "".join(s.line() for s in self.signatures)  # type: ignore[attr-defined]


# -- checkpoints ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Checkpoint(_SignedNote):
    origin: str
    size: int
    root: bytes
    prev: bytes
    time: int
    events: int
    signatures: tuple[NoteSignature, ...] = ()

    kind = "checkpoint"

    @property
    def tenant(self) -> str:
        return self.origin[len(ORIGIN_PREFIX) :]

    def body(self) -> str:
        return f"{self._common_lines()}events {self.events}\n"

    @classmethod
    def from_text(cls, text: str | bytes) -> Checkpoint:
        body, lines, signatures = _split_note(text)
        if len(lines) != 6:
            raise MalformedNote("a checkpoint has 6 body lines", {"lines": len(lines)})
        _origin_tenant(lines[0], "")
        cp = cls(
            origin=lines[0],
            size=_decimal(lines[1], "size"),
            root=_unb64(lines[2], "root"),
            prev=_unb64(_ext(lines[3], "prev"), "prev"),
            time=_decimal(_ext(lines[4], "time"), "time"),
            events=_decimal(_ext(lines[5], "events"), "events"),
            signatures=signatures,
        )
        if cp.body() != body:
            raise MalformedNote("checkpoint is not in canonical form")
        return cp


def build_checkpoint(
    tenant: str, heads: Heads, prev_checkpoint_hash: bytes | None, ts: int, signer: ServiceKey
) -> Checkpoint:
    """Sign a checkpoint over the tenant's session heads (`{session_id: (chain length, head)}`)."""
    prev = GENESIS_HEAD if prev_checkpoint_hash is None else prev_checkpoint_hash
    if len(prev) != HASH_SIZE:
        raise ValueError("prev_checkpoint_hash must be 32 bytes")
    unsigned = Checkpoint(
        origin=ORIGIN_PREFIX + validate_tenant_id(tenant),
        size=len(heads),
        root=heads_root(heads),
        prev=prev,
        time=ts,
        events=sum(length for length, _ in heads.values()),
    )
    return replace(unsigned, signatures=(_sign(unsigned.body(), signer),))


def verify_checkpoint(
    cp: Checkpoint,
    public_keys: Iterable[NoteVerifier | str],
    expected_heads: Heads | None = None,
    previous: Checkpoint | bytes | None = None,
) -> str:
    """Check signature, and optionally the heads and the link to `previous`; returns the key name."""
    where: dict[str, object] = {"origin": cp.origin, "time": cp.time, "size": cp.size}
    name = _verify_signatures(cp.body(), cp.signatures, public_keys, where)
    if expected_heads is not None:
        if len(expected_heads) != cp.size:
            heads = len(expected_heads)
            raise VerificationError("tree size differs from the session heads", {**where, "heads": heads})
        root = heads_root(expected_heads)
        if root != cp.root:
            raise VerificationError("root differs from the session heads", {**where, "expected": root.hex()})
        events = sum(length for length, _ in expected_heads.values())
        if events != cp.events:
            raise VerificationError("event count differs from the session heads", {**where, "events": events})
    _check_prev("checkpoint", where, cp.prev, cp.time, previous)
    return name


# -- retention anchors ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RetentionAnchor(_SignedNote):
    origin: str
    size: int
    root: bytes
    prev: bytes
    time: int
    cut: int
    heads: tuple[tuple[str, int, bytes], ...]  # (session_id, chain length, head), sorted
    signatures: tuple[NoteSignature, ...] = ()

    kind = "anchor"

    @property
    def tenant(self) -> str:
        return self.origin[len(ORIGIN_PREFIX) : -len(ANCHOR_SUFFIX)]

    def heads_map(self) -> dict[str, ChainState]:
        return {sid: ChainState(length, head) for sid, length, head in self.heads}

    def body(self) -> str:
        head_lines = "".join(f"head {length} {_b64(head)} {sid}\n" for sid, length, head in self.heads)
        return f"{self._common_lines()}cut {self.cut}\n{head_lines}"

    @classmethod
    def from_text(cls, text: str | bytes) -> RetentionAnchor:
        body, lines, signatures = _split_note(text)
        if len(lines) < 6:
            raise MalformedNote("an anchor has at least 6 body lines", {"lines": len(lines)})
        _origin_tenant(lines[0], ANCHOR_SUFFIX)
        heads: dict[str, tuple[int, bytes]] = {}
        for line in lines[6:]:
            parts = _ext(line, "head").split(" ", 2)
            if len(parts) != 3 or not parts[2] or parts[2] in heads:
                raise MalformedNote("malformed or repeated head line", {"line": line[:80]})
            heads[parts[2]] = (_decimal(parts[0], "head length"), _unb64(parts[1], "head"))
        anchor = cls(
            origin=lines[0],
            size=_decimal(lines[1], "size"),
            root=_unb64(lines[2], "root"),
            prev=_unb64(_ext(lines[3], "prev"), "prev"),
            time=_decimal(_ext(lines[4], "time"), "time"),
            cut=_decimal(_ext(lines[5], "cut"), "cut"),
            heads=tuple(sorted_heads(heads)),
            signatures=signatures,
        )
        if anchor.body() != body:
            raise MalformedNote("anchor is not in canonical form (heads must be sorted)")
        return anchor


def build_anchor(
    tenant: str, heads: Heads, cut: int, prev_anchor_hash: bytes | None, ts: int, signer: ServiceKey
) -> RetentionAnchor:
    """Sign the session heads taken at the retention cut (`cut`: events with ts < cut expire)."""
    for sid in heads:
        if not sid or not sid.isprintable() or sid != sid.strip(" "):
            raise ValueError(f"session id {sid!r} cannot be written on a head line")
    prev = GENESIS_HEAD if prev_anchor_hash is None else prev_anchor_hash
    if len(prev) != HASH_SIZE:
        raise ValueError("prev_anchor_hash must be 32 bytes")
    unsigned = RetentionAnchor(
        origin=ORIGIN_PREFIX + validate_tenant_id(tenant) + ANCHOR_SUFFIX,
        size=len(heads),
        root=heads_root(heads),
        prev=prev,
        time=ts,
        cut=cut,
        heads=tuple(sorted_heads(heads)),
    )
    return replace(unsigned, signatures=(_sign(unsigned.body(), signer),))


def verify_anchor(
    anchor: RetentionAnchor,
    public_keys: Iterable[NoteVerifier | str],
    previous: RetentionAnchor | bytes | None = None,
) -> str:
    """Check the signature, that size/root match the listed heads, and the link to `previous`."""
    where: dict[str, object] = {"origin": anchor.origin, "time": anchor.time, "cut": anchor.cut}
    name = _verify_signatures(anchor.body(), anchor.signatures, public_keys, where)
    heads = {sid: (length, head) for sid, length, head in anchor.heads}
    if len(heads) != anchor.size or heads_root(heads) != anchor.root:
        raise VerificationError("anchor root or size differs from its heads", where)
    _check_prev("anchor", where, anchor.prev, anchor.time, previous)
    return name


def parse_note(text: str | bytes) -> Checkpoint | RetentionAnchor:
    """Read a value from `agenttrail.checkpoints`: a checkpoint or a retention anchor."""
    first = (text.decode("utf-8", "replace") if isinstance(text, bytes | bytearray) else text)[:200]
    if first.split("\n", 1)[0].endswith(ANCHOR_SUFFIX):
        return RetentionAnchor.from_text(text)
    return Checkpoint.from_text(text)
