"""The spool file: order, persistence across reopen, torn-tail recovery, rewrite."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from agenttrail.producers.spool import HEADER, Spool, SpoolRecord, encode_record, scan


def _recs(n: int, topic: str = "agenttrail.acme.events") -> list[SpoolRecord]:
    return [SpoolRecord(topic, f"s{i % 3}".encode(), f"value-{i}".encode()) for i in range(n)]


def _drain(spool: Spool) -> list[SpoolRecord]:
    out = []
    while (rec := spool.peek()) is not None:
        out.append(rec)
        spool.advance()
    return out


records = st.lists(st.builds(SpoolRecord, st.text(max_size=20), st.binary(max_size=30), st.binary(max_size=60)),
                   max_size=20)


@given(records)
def test_scan_reads_back_what_was_encoded(recs: list[SpoolRecord]) -> None:
    data = HEADER + b"".join(encode_record(r) for r in recs)
    assert scan(data) == (recs, len(data))


@given(records, st.integers(1, 40))
def test_scan_stops_before_a_torn_record(recs: list[SpoolRecord], cut: int) -> None:
    data = HEADER + b"".join(encode_record(r) for r in recs)
    if len(data) - cut < len(HEADER):
        return
    got, end = scan(data[:-cut])
    assert got == recs[:len(got)] and len(got) < len(recs)
    assert end <= len(data) - cut


def test_fifo_across_interleaved_appends_and_reads(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "a.spool")
    recs = _recs(10)
    for r in recs[:4]:
        spool.append(r)
    assert spool.peek() == recs[0] and spool.peek() == recs[0]  # peek does not consume
    spool.advance()
    for r in recs[4:]:
        spool.append(r)
    assert spool.pending == 9
    assert _drain(spool) == recs[1:]
    assert spool.pending == 0 and spool.peek() is None
    spool.append(recs[0])
    assert _drain(spool) == [recs[0]]


def test_reopen_keeps_unacknowledged_records_and_cuts_a_torn_tail(tmp_path: Path) -> None:
    path = tmp_path / "a.spool"
    spool = Spool(path)
    for r in _recs(5):
        spool.append(r)
    spool.close()
    with open(path, "ab") as fh:
        fh.write(encode_record(SpoolRecord("t", b"k", b"torn"))[:-2])  # crash mid-append
    again = Spool(path)
    assert again.pending == 5
    assert _drain(again) == _recs(5)
    again.append(SpoolRecord("t", b"k", b"after"))
    again.close()
    assert Spool(path).unread() == [*_recs(5), SpoolRecord("t", b"k", b"after")]


def test_rewrite_and_reset(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "a.spool")
    for r in _recs(6):
        spool.append(r)
    _drain(spool)
    spool.append(SpoolRecord("t", b"k", b"new"))
    assert spool.unread() == [SpoolRecord("t", b"k", b"new")]
    spool.rewrite([*_recs(2), *spool.unread()])
    assert spool.pending == 3
    assert _drain(spool) == [*_recs(2), SpoolRecord("t", b"k", b"new")]
    spool.reset()
    assert (tmp_path / "a.spool").read_bytes() == HEADER and spool.pending == 0


def test_a_foreign_file_is_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "a.spool"
    path.write_bytes(b"something else entirely")
    spool = Spool(path)
    assert spool.pending == 0 and path.read_bytes() == HEADER
    assert [p.name for p in tmp_path.iterdir() if ".bad-" in p.name]
