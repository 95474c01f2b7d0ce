"""The write-ahead spool of instances answered before they are committed (C-STORE, through
received.StoreQueue): append-only segment files under `<data dir>/dimse-spool/`.

A C-STORE is answered Success once its record is here and `fdatasync`ed: one sync per
instance, nothing else on the response path. Each association appends to its own segment
(a new one every SEGMENT_BYTES), so associations never wait for each other's syncs. A segment
is deleted once every record in it is committed to the catalog; whatever is left at start
(a crash, a kill, a stop that timed out) is read back and committed then.

Record: b"TSR1", kind (1 byte), datastore id (32 bytes, ASCII, space padded), payload length
(8 bytes LE), payload, b"TSR." -- one write, then the sync. A record cut short by a crash
lacks its end mark and ends the segment: its C-STORE was never answered.
"""

from __future__ import annotations

import itertools
import logging
import os
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from tessel.files import fsync_dir

log = logging.getLogger("tessel.dimse")

FOLDER = "dimse-spool"
FAILED = "failed"
SEGMENT_BYTES = 256 * 1024 * 1024
_MAGIC = b"TSR1"
_END = b"TSR."
_HEADER = struct.Struct("<4sc32sQ")
_counter = itertools.count()


class Kind(Enum):
    RAW = b"R"  # Part 10 bytes, not yet staged
    STAGED = b"S"  # a staged instance (ingest.staging's JSON), its frames already in the blob store


@dataclass(frozen=True, slots=True)
class Record:
    kind: Kind
    datastore_id: str
    offset: int  # where the payload starts in the segment file
    payload: bytes


class Segment:
    """One spool file; `append` is called from one association's thread at a time."""

    def __init__(self, path: Path, *, sync: bool, fd: int | None = None) -> None:
        self.path = path
        self.sync = sync
        self._fd = fd
        self.size = path.stat().st_size if fd is None and path.exists() else 0
        self.appended = 0  # records in the file
        self.settled = 0  # records committed (or set aside as failed)
        self.closed = fd is None  # no more appends: deletable once every record is settled
        self._lock = threading.Lock()

    @classmethod
    def create(cls, folder: Path, *, sync: bool) -> "Segment":
        path = folder / f"{time.time_ns():020d}-{os.getpid()}-{next(_counter):06d}.seg"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        if sync:
            fsync_dir(folder)  # the new name survives a power loss
        return cls(path, sync=sync, fd=fd)

    def append(self, kind: Kind, datastore_id: str, payload: bytes) -> int:
        """Write one record and sync it; the payload's offset. OSError if the disk refuses."""
        if self._fd is None:
            raise ValueError(f"spool segment {self.path.name} is closed")
        header = _HEADER.pack(_MAGIC, kind.value, datastore_id.encode("ascii").ljust(32)[:32], len(payload))
        offset = self.size + len(header)
        try:
            written = _write_all(self._fd, header, payload, _END)
            if self.sync:
                os.fdatasync(self._fd)
        except OSError:
            try:  # no torn record in front of the next one
                os.ftruncate(self._fd, self.size)
            except OSError:
                self.close()  # cannot repair it: the next C-STORE opens a new segment
            raise
        with self._lock:
            self.appended += 1
            self.size += written
        return offset

    def read(self, offset: int, length: int) -> bytes:
        with open(self.path, "rb") as f:
            f.seek(offset)
            data = f.read(length)
        if len(data) != length:
            raise OSError(f"spool segment {self.path.name} is shorter than its records")
        return data

    @property
    def full(self) -> bool:
        return self.size >= SEGMENT_BYTES

    def close(self) -> None:
        with self._lock:
            fd, self._fd = self._fd, None
            self.closed = True
        if fd is not None:
            os.close(fd)

    def settle(self, count: int = 1) -> bool:
        """Count records as committed; True when the segment is closed and all of them are."""
        with self._lock:
            self.settled += count
            return self.closed and self.settled >= self.appended

    @property
    def done(self) -> bool:
        with self._lock:
            return self.closed and self.settled >= self.appended

    def delete(self) -> None:
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass


def _write_all(fd: int, *chunks: bytes) -> int:
    # os.writev: no copy of a large payload just to put the header in front of it.
    total, want = 0, sum(len(c) for c in chunks)
    parts = [memoryview(c) for c in chunks]
    while total < want:
        n = os.writev(fd, parts)
        total += n
        while parts and n >= len(parts[0]):
            n -= len(parts[0])
            parts.pop(0)
        if parts and n:
            parts[0] = parts[0][n:]
    return total


def read_segment(path: Path) -> Iterator[Record]:
    """The whole records of a segment, in order; stops at a torn or corrupt tail."""
    with open(path, "rb") as f:
        offset = 0
        while True:
            head = f.read(_HEADER.size)
            if not head:
                return
            if len(head) == _HEADER.size:
                magic, kind, datastore, length = _HEADER.unpack(head)
                if magic == _MAGIC and kind in (k.value for k in Kind):
                    payload = f.read(length)
                    if len(payload) == length and f.read(len(_END)) == _END:
                        yield Record(Kind(kind), datastore.decode("ascii").strip(), offset + len(head), payload)
                        offset += len(head) + length + len(_END)
                        continue
            log.warning("spool segment %s ends with an incomplete record (never acknowledged)", path.name)
            return


class Spool:
    def __init__(self, folder: Path, *, sync: bool = True) -> None:
        self.folder = folder
        self.sync = sync

    def open(self) -> Segment:
        self.folder.mkdir(parents=True, exist_ok=True)
        return Segment.create(self.folder, sync=self.sync)

    def leftovers(self) -> list[Path]:
        """Segments a previous run did not finish, oldest first."""
        if not self.folder.is_dir():
            return []
        return sorted(p for p in self.folder.glob("*.seg") if p.is_file())

    def set_aside(self, payload: bytes, name: str, reason: str) -> Path:
        """Keep an instance that could not be stored after it was acknowledged, with the reason."""
        folder = self.folder / FAILED
        folder.mkdir(parents=True, exist_ok=True)
        safe = "".join(c if c.isalnum() or c in ".-_" else "_" for c in name)[:80] or "instance"
        path = folder / f"{time.time_ns():020d}-{safe}.dcm"
        path.write_bytes(payload)
        path.with_suffix(".txt").write_text(reason + "\n", encoding="utf-8")
        return path
