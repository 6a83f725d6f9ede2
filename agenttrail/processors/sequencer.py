"""The chain stage's pure core: per (tenant, session) state, seq checks, ledger records out.

Deterministic: the same state and the same raw message always give the same output, so a
redelivery re-emits an identical ledger record. The state of a partition is a fold over its
ledger partition (`SessionTable.absorb`), which is how a worker rebuilds it after a restart.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from agenttrail.errors import InvalidEvent
from agenttrail.processors.chain import GENESIS_HEAD, next_head
from agenttrail.processors.verify import RegistryLike, Verified, VerifyPolicy, verify_events
from agenttrail.schemas.ledger import LedgerRecord


@dataclass(slots=True)
class SessionState:
    index: int = 0  # next chain index (= chain length)
    head: bytes = GENESIS_HEAD
    last_seq: dict[str, int] = field(default_factory=dict)  # agent_id -> last chained seq


@dataclass(frozen=True, slots=True)
class Chained:
    record: LedgerRecord


@dataclass(frozen=True, slots=True)
class Rejected:
    reason: str
    detail: str


Outcome = Chained | Rejected


class SessionTable:
    """Chain state of the sessions of one or more (tenant, partition)s."""

    def __init__(self) -> None:
        self.sessions: dict[tuple[str, str], SessionState] = {}

    def __len__(self) -> int:
        return len(self.sessions)

    def heads(self, tenant_id: str) -> dict[str, tuple[int, bytes]]:
        return {s: (st.index, st.head) for (t, s), st in self.sessions.items() if t == tenant_id and st.index}

    def absorb(self, record: LedgerRecord) -> None:
        """Fold one already-written ledger record into the state (rebuild after restart)."""
        env = record.envelope
        state = self.sessions.setdefault((env.tenant_id, env.session_id), SessionState())
        if record.chain_index < state.index:
            return  # a duplicate of a record already absorbed
        state.index = record.chain_index + 1
        state.head = record.entry_hash
        previous = state.last_seq.get(env.agent_id, -1)
        if env.seq > previous:
            state.last_seq[env.agent_id] = env.seq

    def absorb_checked(self, record: LedgerRecord) -> bool:
        """``absorb`` for records folded on top of a restored snapshot: False (nothing changed)
        when the record does not continue the state — the snapshot then cannot be trusted."""
        env = record.envelope
        state = self.sessions.get((env.tenant_id, env.session_id))
        if state is None:
            ok = record.chain_index == 0 and record.prev_hash == GENESIS_HEAD
        else:
            ok = record.chain_index < state.index or (
                record.chain_index == state.index and record.prev_hash == state.head)
        if ok:
            self.absorb(record)
        return ok

    def export(self) -> list[tuple[str, str, int, bytes, dict[str, int]]]:
        """Every session's state as plain rows (for a snapshot), in a stable order."""
        return [(t, s, st.index, st.head, dict(st.last_seq)) for (t, s), st in sorted(self.sessions.items())]

    @classmethod
    def restore(cls, rows: Iterable[tuple[str, str, int, bytes, dict[str, int]]]) -> SessionTable:
        table = cls()
        for tenant, session, index, head, last_seq in rows:
            table.sessions[(tenant, session)] = SessionState(index, head, dict(last_seq))
        return table

    def absorb_all(self, records: Iterable[LedgerRecord]) -> None:
        for record in records:
            self.absorb(record)

    def drop_tenant_partition(self, tenant_id: str, owns: object) -> None:
        """Forget sessions of a tenant for which ``owns(session_id)`` is true (partition revoked)."""
        for key in [k for k in self.sessions if k[0] == tenant_id and owns(k[1])]:  # type: ignore[operator]
            del self.sessions[key]

    def process(self, value: bytes | None, key: bytes | None, topic_tenant: str, partition: int,
                offset: int, registry: RegistryLike, policy: VerifyPolicy, now_micros: int) -> Outcome:
        """Verify one raw message and, if it passes, chain it (``verify_events`` of one message: a
        poison message that makes a check raise is a ``malformed`` rejection, never a crash)."""
        answer = verify_events([(value, key)], [topic_tenant], registry, policy, now_micros)[0]
        return self.chain(answer, partition, offset)

    def chain(self, verified: Verified | InvalidEvent, partition: int, offset: int) -> Outcome:
        """Chain one answer of ``verify_event``/``verify_events`` (a rejection passes through)."""
        if type(verified) is not Verified:
            return Rejected(verified.reason, str(verified))  # type: ignore[union-attr]
        env = verified.envelope
        skey = (env.tenant_id, env.session_id)
        state = self.sessions.get(skey)
        if state is None:
            state = self.sessions[skey] = SessionState()
        last = state.last_seq.get(env.agent_id, -1)
        if env.seq <= last:
            return Rejected("duplicate_seq", f"seq {env.seq} of agent {env.agent_id!r} already chained "
                                             f"(last {last})")
        index, prev = state.index, state.head
        entry = next_head(prev, verified.signing_bytes)
        state.index = index + 1
        state.head = entry
        state.last_seq[env.agent_id] = env.seq
        return Chained(LedgerRecord(env, index, prev, entry, env.seq != last + 1, partition, offset))
