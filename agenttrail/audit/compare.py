"""Row-by-row comparison of two sets of ledger records keyed by (tenant, session, chain_index):
missing, extra and differing rows located exactly, with the fields that differ (pure)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from agenttrail.audit.report import AuditFailure
from agenttrail.schemas.ledger import LedgerRecord

Key = tuple[str, str, int]
ENVELOPE_FIELDS = ("event_id", "agent_id", "seq", "ts", "type", "payload", "payload_sha256", "attributes",
                   "key_id", "signature")
RECORD_FIELDS = ("prev_hash", "entry_hash", "seq_gap", "source_partition", "source_offset")


def keyed(records: Iterable[LedgerRecord]) -> dict[Key, list[LedgerRecord]]:
    out: dict[Key, list[LedgerRecord]] = {}
    for rec in records:
        env = rec.envelope
        copies = out.setdefault((env.tenant_id, env.session_id, rec.chain_index), [])
        if rec not in copies:
            copies.append(rec)
    return out


def _show(value: Any) -> str:
    if isinstance(value, bytes):
        text = value.hex() if len(value) <= 64 else value[:64].hex() + "…"
        return text or "(empty)"
    return repr(value)[:160]


def differing_fields(expected: LedgerRecord, actual: LedgerRecord) -> list[tuple[str, Any, Any]]:
    found = []
    for name in ENVELOPE_FIELDS:
        a, b = getattr(expected.envelope, name), getattr(actual.envelope, name)
        if a != b:
            found.append((name, a, b))
    for name in RECORD_FIELDS:
        a, b = getattr(expected, name), getattr(actual, name)
        if a != b:
            found.append((name, a, b))
    return found


def compare_records(expected: Iterable[LedgerRecord], actual: Iterable[LedgerRecord], *,
                    expected_name: str = "ledger", actual_name: str = "clickhouse",
                    check: str = "compare") -> tuple[int, list[AuditFailure]]:
    """(rows compared, failures): every key missing from `actual`, extra in it, or different."""
    left, right = keyed(expected), keyed(actual)
    failures: list[AuditFailure] = []
    for key in sorted(left.keys() | right.keys()):
        tenant, session, index = key
        mine, theirs = left.get(key), right.get(key)
        if theirs is None:
            failures.append(AuditFailure(check, f"missing_in_{actual_name}", tenant, session, index,
                                         mine[0].envelope.event_id, "(no row)"))  # type: ignore[index]
            continue
        if mine is None:
            failures.append(AuditFailure(check, f"extra_in_{actual_name}", tenant, session, index,
                                         "(no row)", theirs[0].envelope.event_id,
                                         f"not in the {expected_name}"))
            continue
        for copy in theirs:
            diff = differing_fields(mine[0], copy)
            if diff:
                names = ", ".join(name for name, _, _ in diff)
                failures.append(AuditFailure(check, "row_differs", tenant, session, index,
                                             "; ".join(f"{n}={_show(a)}" for n, a, _ in diff),
                                             "; ".join(f"{n}={_show(b)}" for n, _, b in diff),
                                             f"{actual_name} differs from the {expected_name} in: {names}"))
    return len(left.keys() | right.keys()), failures
