"""What an audit found: value types for failures and the report, and their table/JSON forms (pure)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

# The `check` of a failure says which part of the audit found it.
CHECKS = ("source", "chain", "payload", "key", "signature", "checkpoint", "anchor", "compare", "replay")


@dataclass(frozen=True, slots=True)
class AuditFailure:
    """One bad record (or note), located exactly: tenant, session, chain index, what differs."""

    check: str
    kind: str
    tenant_id: str
    session_id: str | None = None
    chain_index: int | None = None
    expected: str = ""
    actual: str = ""
    detail: str = ""
    more: int = 0  # further failures of the same check in the same session, not listed

    def to_dict(self) -> dict[str, Any]:
        return {
            "check": self.check, "kind": self.kind, "tenant_id": self.tenant_id,
            "session_id": self.session_id, "chain_index": self.chain_index,
            "expected": self.expected, "actual": self.actual, "detail": self.detail, "more": self.more,
        }

    @property
    def message(self) -> str:
        where = f"tenant {self.tenant_id}"
        if self.session_id is not None:
            where += f" session {self.session_id}"
        if self.chain_index is not None:
            where += f" index {self.chain_index}"
        text = f"{self.check}/{self.kind} at {where}"
        if self.expected or self.actual:
            text += f": expected {self.expected}, got {self.actual}"
        return text + (f" ({self.detail})" if self.detail else "")


@dataclass(frozen=True, slots=True)
class AuditReport:
    """The outcome of one audit run. `ok` only when nothing failed."""

    tenant_id: str | None = None
    source: str = "records"
    sessions: int = 0
    events: int = 0
    signatures_checked: int = 0
    checkpoints_checked: int = 0
    anchors_checked: int = 0
    rows_compared: int = 0
    failures: tuple[AuditFailure, ...] = ()
    chain_seconds: float = 0.0
    signature_seconds: float = 0.0
    notes: tuple[str, ...] = field(default_factory=tuple)
    processes: int = 1  # that checked the chains
    processes_note: str | None = None  # why fewer than wanted (e.g. threads make forking unsafe)

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def chain_events_per_s(self) -> float | None:
        return self.events / self.chain_seconds if self.chain_seconds > 0 and self.events else None

    @property
    def signatures_per_s(self) -> float | None:
        if self.signature_seconds > 0 and self.signatures_checked:
            return self.signatures_checked / self.signature_seconds
        return None

    def with_failures(self, failures: Iterable[AuditFailure], **changes: Any) -> AuditReport:
        return replace(self, failures=self.failures + tuple(failures), **changes)

    def with_notes(self, *notes: str) -> AuditReport:
        return replace(self, notes=self.notes + tuple(notes))

    def summary(self) -> dict[str, Any]:
        """The summary table: one mapping, readable as a two-column table."""
        chain_rate, sig_rate = self.chain_events_per_s, self.signatures_per_s
        return {
            "result": "OK" if self.ok else "FAILED",
            "tenant": self.tenant_id or "-",
            "source": self.source,
            "sessions": self.sessions,
            "events": self.events,
            "signatures checked": self.signatures_checked,
            "checkpoints checked": self.checkpoints_checked,
            "anchors checked": self.anchors_checked,
            "rows compared": self.rows_compared,
            "failures": len(self.failures) + sum(f.more for f in self.failures),
            "chain check events/s": f"{chain_rate:,.0f}" if chain_rate else "-",
            "signatures/s": f"{sig_rate:,.0f}" if sig_rate else "-",
            "processes": f"{self.processes} ({self.processes_note})" if self.processes_note else self.processes,
        }

    def failure_rows(self, limit: int | None = None) -> list[dict[str, Any]]:
        rows = [f.to_dict() for f in self.failures]
        return rows if limit is None else rows[:limit]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (not a string): summary counts, rates, failures and notes."""
        return {
            "ok": self.ok,
            "tenant_id": self.tenant_id,
            "source": self.source,
            "sessions": self.sessions,
            "events": self.events,
            "signatures_checked": self.signatures_checked,
            "checkpoints_checked": self.checkpoints_checked,
            "anchors_checked": self.anchors_checked,
            "rows_compared": self.rows_compared,
            "chain_events_per_s": self.chain_events_per_s,
            "signatures_per_s": self.signatures_per_s,
            "processes": self.processes,
            "processes_note": self.processes_note,
            "failures": [f.to_dict() for f in self.failures],
            "notes": list(self.notes),
        }


def combine(first: AuditReport, second: AuditReport) -> AuditReport:
    """Add the counts and failures of two partial reports (e.g. verify + compare)."""
    return AuditReport(
        tenant_id=first.tenant_id or second.tenant_id,
        source=first.source if first.source == second.source else f"{first.source}+{second.source}",
        sessions=max(first.sessions, second.sessions),
        events=max(first.events, second.events),
        signatures_checked=first.signatures_checked + second.signatures_checked,
        checkpoints_checked=first.checkpoints_checked + second.checkpoints_checked,
        anchors_checked=first.anchors_checked + second.anchors_checked,
        rows_compared=first.rows_compared + second.rows_compared,
        failures=first.failures + second.failures,
        chain_seconds=first.chain_seconds + second.chain_seconds,
        signature_seconds=first.signature_seconds + second.signature_seconds,
        notes=first.notes + second.notes,
        processes=max(first.processes, second.processes),
        processes_note=first.processes_note or second.processes_note,
    )
