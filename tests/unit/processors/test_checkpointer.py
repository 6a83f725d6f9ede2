"""The checkpointer shell without a broker: what it folds is what it signs and what it snapshots,
and a snapshot carries exactly the offset its heads were folded to."""

from __future__ import annotations

import zlib
from pathlib import Path
from types import SimpleNamespace

from test_checkpointer_state import PARTITIONS, interleaved, oracle, partitions

from agenttrail.config import Settings
from agenttrail.kafka.topics import CHECKPOINTER_STATE_TOPIC, CHECKPOINTS_TOPIC
from agenttrail.metrics import Metrics
from agenttrail.processors import checkpointer_state as state_mod
from agenttrail.processors.checkpoint import parse_note, verify_checkpoint
from agenttrail.processors.checkpointer import Checkpointer
from agenttrail.processors.checkpointer_state import HEAD_ROWS, fold, merge_heads
from agenttrail.processors.service_key import ServiceKey
from agenttrail.processors.snapshot import Snapshot, latest_snapshots

TOPIC = "agenttrail.acme.ledger"


class FakeProducer:
    """Records what is produced; transactions commit. ``flush`` reports deliveries: each message to
    partition ``partition`` or else ``by_key(key)``, at the next offset of a partition (from
    ``ends``), or an error for the topics in ``failing``."""

    def __init__(self, partitions: int = PARTITIONS) -> None:
        self.messages: list[tuple[str, bytes, bytes, int | None]] = []
        self.headers: list[dict[str, bytes]] = []
        self.transactions = 0
        self.partitions = partitions
        self.ends: dict[int, int] = {}
        self.failing: set[str] = set()
        self._reports: list[tuple[object, str, int]] = []

    def begin_transaction(self) -> None:
        self.transactions += 1

    def produce(self, topic: str, key: bytes, value: bytes, partition: int | None = None,
                headers: list[tuple[str, bytes]] | None = None, on_delivery: object = None) -> None:
        part = partition if partition is not None else zlib.crc32(key) % self.partitions
        self.messages.append((topic, key, value, part))
        self.headers.append(dict(headers or []))
        if on_delivery is not None:
            self._reports.append((on_delivery, topic, part))

    def flush(self, timeout: float = 0) -> int:
        for callback, topic, part in self._reports:
            offset = self.ends.get(part, 0)
            self.ends[part] = offset + 1
            msg = SimpleNamespace(partition=lambda p=part: p, offset=lambda o=offset: o)
            callback("failed" if topic in self.failing else None, msg)  # type: ignore[operator]
        self._reports.clear()
        return 0

    def of_partition(self, topic: str, partition: int) -> list[tuple[bytes, bytes, dict[str, bytes]]]:
        return [(k, v, h) for (t, k, v, p), h in zip(self.messages, self.headers, strict=True)
                if t == topic and p == partition]

    def commit_transaction(self, timeout: float) -> None:
        pass

    def of(self, topic: str) -> list[tuple[bytes, bytes]]:
        return [(k, v) for t, k, v, _ in self.messages if t == topic]


def checkpointer(tmp_path: Path) -> tuple[Checkpointer, FakeProducer]:
    settings = Settings(home=tmp_path, checkpointer_snapshot_seconds=60.0)
    cp = Checkpointer(settings, "unused:9092", object(), ServiceKey.generate("test"), metrics=Metrics())
    state = FakeProducer()
    cp._state_producer, cp._state_partitions = state, PARTITIONS  # what open_snapshots sets up
    return cp, state


def test_what_it_folds_it_signs_and_snapshots_to_the_exact_offset(tmp_path: Path) -> None:
    records = interleaved(2000)
    parts = partitions(records)
    cp, state = checkpointer(tmp_path)
    half = {p: len(msgs) // 2 for p, msgs in parts.items()}
    for p, msgs in parts.items():
        for msg in msgs[: half[p]]:
            cp.absorb_ledger(TOPIC, p, *msg)
    assert cp.snapshot_due(1) == PARTITIONS and not cp._dirty
    snaps = latest_snapshots(state.of(CHECKPOINTER_STATE_TOPIC), HEAD_ROWS)
    assert {part: s.ledger_offset for part, s in snaps.items()} == {(TOPIC, p): n for p, n in half.items()}
    # restoring each snapshot and folding the rest of its partition gives the heads of all records
    resumed = [fold(parts[p][half[p]:], snaps[(TOPIC, p)]) for p in parts]
    assert merge_heads(r for r in resumed if r is not None) == oracle(records)
    # only a partition folded on since is written again, and not before the interval
    msg = parts[0][half[0]]
    cp.absorb_ledger(TOPIC, 0, *msg)
    assert cp.snapshot_due(2) == 0
    cp._snapshot_at -= 61
    assert cp.snapshot_due(3) == 1
    assert latest_snapshots(state.of(CHECKPOINTER_STATE_TOPIC), HEAD_ROWS)[(TOPIC, 0)].ledger_offset == half[0] + 1
    # the checkpoint covers the heads of every record folded, and verifies
    for p, msgs in parts.items():
        for msg in msgs[half[p] + (p == 0):]:
            cp.absorb_ledger(TOPIC, p, *msg)
    out = FakeProducer()
    assert cp.checkpoint_all(out, 10) == 1  # the registry lists none: the tenants it saw
    heads, last_ts = oracle(records)
    assert cp.tenants["acme"].merged() == (heads, last_ts)
    note = parse_note(out.of(CHECKPOINTS_TOPIC)[0][1])
    verify_checkpoint(note, [cp.key.verifier], expected_heads=heads)


def test_snapshots_are_written_in_bounded_transactions(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(state_mod, "ROWS_PER_TRANSACTION", 10)
    snaps = [Snapshot(TOPIC, p, 1, "x", 1, (("s", 1, bytes(32), 0),) * n) for p, n in
             enumerate((4, 4, 4, 30, 0, 2))]
    groups = state_mod.transactions(snaps)
    assert [[len(s.sessions) for s in g] for g in groups] == [[4, 4], [4], [30], [0, 2]]
    assert [s for g in groups for s in g] == snaps
