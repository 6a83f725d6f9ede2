"""The offline spool: an append-only file of (topic, key, value) records, read back in order.

File layout (all integers big-endian)::

    b"ATSPOOL1"                                   8-byte header
    repeated:  u32 body_len | u32 crc32(body) | body
    body:      u32 topic_len | topic (UTF-8) | u32 key_len | key | value

A record is complete only when its length and CRC check out; on open, a torn tail (a crash in the
middle of an append) is cut off and logged, everything before it is kept.

Durability: every append is written to the OS at once (a process crash loses nothing appended);
``fsync`` runs at most every ``fsync_interval`` seconds while appending, and always on ``sync()``,
``rewrite()`` and ``close()``. A machine crash can therefore lose up to ``fsync_interval`` seconds
of spooled events. Records are delivered at least once: a record handed to Kafka is removed from
the file only when the whole file has been handed over and acknowledged, so a crash in between
re-sends it, and the verifier drops the duplicate ``seq``.
"""

from __future__ import annotations

import logging
import os
import struct
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

logger = logging.getLogger(__name__)

HEADER = b"ATSPOOL1"
_frame = struct.Struct(">II")
_u32 = struct.Struct(">I")


@dataclass(frozen=True, slots=True)
class SpoolRecord:
    topic: str
    key: bytes
    value: bytes


# -- pure core ----------------------------------------------------------------------------------
def encode_record(rec: SpoolRecord) -> bytes:
    topic = rec.topic.encode("utf-8")
    body = b"".join((_u32.pack(len(topic)), topic, _u32.pack(len(rec.key)), rec.key, rec.value))
    return _frame.pack(len(body), zlib.crc32(body)) + body


def _decode_body(body: bytes) -> SpoolRecord:
    (tlen,) = _u32.unpack_from(body, 0)
    topic = body[4:4 + tlen].decode("utf-8")
    (klen,) = _u32.unpack_from(body, 4 + tlen)
    kstart = 8 + tlen
    return SpoolRecord(topic, body[kstart:kstart + klen], body[kstart + klen:])


def scan(data: bytes, start: int = len(HEADER)) -> tuple[list[SpoolRecord], int]:
    """Complete records from ``start`` and the offset just after the last complete one."""
    records: list[SpoolRecord] = []
    pos = start
    while pos + _frame.size <= len(data):
        length, crc = _frame.unpack_from(data, pos)
        end = pos + _frame.size + length
        if end > len(data):
            break
        body = data[pos + _frame.size:end]
        if zlib.crc32(body) != crc:
            break
        try:
            records.append(_decode_body(body))
        except (struct.error, UnicodeDecodeError):
            break
        pos = end
    return records, pos


# -- file shell ---------------------------------------------------------------------------------
class Spool:
    """One spool file: ``append`` at the end, ``peek``/``advance`` from the read position."""

    def __init__(self, path: Path, fsync_interval: float = 1.0) -> None:
        self.path = Path(path)
        self.fsync_interval = fsync_interval
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._recover()
        self._writer: BinaryIO = open(self.path, "ab")  # noqa: SIM115 - lives as long as the spool
        self._last_sync = time.monotonic()
        self._dirty = False
        self._reader_fh: BinaryIO | None = None
        self._read_pos = len(HEADER)
        self._head: SpoolRecord | None = None
        self._head_end = 0

    def _recover(self) -> None:
        data = self.path.read_bytes() if self.path.exists() else b""
        if not data.startswith(HEADER):
            if data:
                bad = self.path.with_suffix(self.path.suffix + f".bad-{int(time.time())}")
                os.replace(self.path, bad)
                logger.error("spool %s has no spool header; moved it aside to %s", self.path, bad)
            self.path.write_bytes(HEADER)
            self.pending = 0
            return
        records, end = scan(data)
        if end != len(data):
            logger.warning("spool %s: cut a torn tail of %d bytes after %d records",
                           self.path, len(data) - end, len(records))
            with open(self.path, "r+b") as fh:
                fh.truncate(end)
                fh.flush()
                os.fsync(fh.fileno())
        self.pending = len(records)
        if records:
            logger.info("spool %s holds %d undelivered events", self.path, len(records))

    # -- writing ---------------------------------------------------------------------------------
    def append(self, rec: SpoolRecord) -> None:
        self._writer.write(encode_record(rec))
        self._writer.flush()
        self.pending += 1
        self._dirty = True
        if time.monotonic() - self._last_sync >= self.fsync_interval:
            self.sync()

    def sync(self) -> None:
        if self._dirty:
            self._writer.flush()
            os.fsync(self._writer.fileno())
            self._dirty = False
        self._last_sync = time.monotonic()

    # -- reading ---------------------------------------------------------------------------------
    def _read_at(self, pos: int) -> tuple[SpoolRecord, int] | None:
        if self._reader_fh is None:
            self._reader_fh = open(self.path, "rb")  # noqa: SIM115 - closed in rewrite()/close()
        self._reader_fh.seek(pos)
        frame = self._reader_fh.read(_frame.size)
        if len(frame) < _frame.size:
            return None
        length, crc = _frame.unpack(frame)
        body = self._reader_fh.read(length)
        if len(body) < length or zlib.crc32(body) != crc:
            raise OSError(f"spool {self.path}: record at offset {pos} is damaged")
        return _decode_body(body), pos + _frame.size + length

    def peek(self) -> SpoolRecord | None:
        """The next unread record (it stays unread until ``advance``)."""
        if self._head is None and self.pending:
            found = self._read_at(self._read_pos)
            if found is not None:
                self._head, self._head_end = found
        return self._head

    def advance(self) -> None:
        if self._head is None:
            raise RuntimeError("advance() without a record from peek()")
        self._head = None
        self._read_pos = self._head_end
        self.pending -= 1

    def unread(self) -> list[SpoolRecord]:
        """Every record not yet advanced over, in order (the read position does not move)."""
        out: list[SpoolRecord] = []
        pos = self._read_pos
        while len(out) < self.pending:
            found = self._read_at(pos)
            if found is None:
                break
            rec, pos = found
            out.append(rec)
        return out

    # -- whole-file operations -----------------------------------------------------------------
    def rewrite(self, records: Iterable[SpoolRecord]) -> None:
        """Atomically replace the file by ``records`` (all unread)."""
        self._writer.close()
        self._close_reader()
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        count = 0
        with open(tmp, "wb") as fh:
            fh.write(HEADER)
            for rec in records:
                fh.write(encode_record(rec))
                count += 1
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        self._writer = open(self.path, "ab")  # noqa: SIM115
        self.pending = count
        self._read_pos = len(HEADER)
        self._dirty = False

    def reset(self) -> None:
        """Empty the file once everything in it has been delivered."""
        self.rewrite(())

    def close(self) -> None:
        if not self._writer.closed:
            self.sync()
            self._writer.close()
        self._close_reader()

    def _close_reader(self) -> None:
        if self._reader_fh is not None:
            self._reader_fh.close()
            self._reader_fh = None
        self._head = None
