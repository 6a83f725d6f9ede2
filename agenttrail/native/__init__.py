"""Optional native code: the C fast path for the verifier's per-event parsing (``_fastpath.c``)
and Ed25519 verification in Rust (``ed25519-rs``, loaded by ``ed25519.py``; see its docstring).

Every function in it is a drop-in for a pure-Python function that stays the reference, and the
tests hold the two to identical results on valid and on mutated input. ``fastpath`` is None when
the extension was not built (no C compiler at install time) or when ``AGENTTRAIL_NATIVE=0`` is set
in the environment (read once, at import: the switch exists to compare the two paths and as an
escape hatch, not as a per-run setting).
"""

from __future__ import annotations

import os
from types import ModuleType

fastpath: ModuleType | None = None
if os.environ.get("AGENTTRAIL_NATIVE", "1") != "0":
    try:
        from agenttrail.native import _fastpath as fastpath
    except ImportError:  # not built: the pure-Python path runs
        fastpath = None


def status() -> str:
    """'on', 'off (AGENTTRAIL_NATIVE=0)' or 'off (not built)', for logs and the bench table."""
    if fastpath is not None:
        return "on"
    return "off (AGENTTRAIL_NATIVE=0)" if os.environ.get("AGENTTRAIL_NATIVE", "1") == "0" else "off (not built)"


def ed25519_status() -> str:
    """'on' or 'off (<why>)' for the Rust Ed25519 verifier; libsodium verifies when it is off."""
    from agenttrail.native import ed25519

    return "on" if ed25519.lib is not None else f"off ({ed25519.why_off}): libsodium verifies"
