"""The latest documents of the image sets being written, kept decoded and half-encoded.

Adding instances to a series one request at a time (STOW-RS, C-STORE) makes a version per
commit. Reading, decoding, re-encoding and compressing the whole document each time made a
300-slice series cost 300 x 150 instances of work. Here the writer keeps, per image set it
wrote last, the decoded document and a gzip compressor that has consumed the document's JSON
text up to its last instance: a version that only appends new instances to the last series
(the usual case) costs the new instances' JSON and compression plus a copy of bytes.

The bytes differ from `documents.encode` (other deflate block boundaries) but decode to the
same document. Entries are taken out while a commit uses them and put back only once its
transaction committed, so a failed or raced commit never leaves a wrong document here.
"""

from __future__ import annotations

import threading
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from tessel import documents

CAPACITY = 8  # image sets kept (a whole-slide document is a few MB decoded)
_TAIL = b"}}}}}"  # closes: last instance node, Instances, the series, Series, Study, the document
_LEVEL = 5  # as documents.encode


@dataclass(slots=True)
class Latest:
    """One image set's latest version: its document and, when it ends with an instance of its
    last series, the compressor state after that instance (plus the bytes it produced)."""

    version: int
    doc: dict[str, Any]
    compressor: Any = None  # zlib compressobj (gzip wrapper) positioned before _TAIL
    compressed: bytearray | None = None

    @classmethod
    def of(cls, version: int, doc: dict[str, Any]) -> "Latest":
        return cls(version, doc)

    def encode(self, added: list[tuple[str, str, dict[str, Any]]], before: "_Levels | None") -> bytes:
        """The gzip bytes of `doc` after `added` (series uid, SOP uid, node) were put into it.
        `before`: the patient/study/series attributes before they were put (None: unknown)."""
        if self.compressor is not None and before is not None and self._appends(added, before):
            piece = b"".join(b"," + documents.dumps(sop) + b":" + documents.dumps(node) for _, sop, node in added)
            assert self.compressed is not None
            self.compressed += self.compressor.compress(piece)
            self.compressed += self.compressor.flush(zlib.Z_SYNC_FLUSH)
        else:
            self._restart()
        if self.compressor is None:
            return documents.encode(self.doc)
        assert self.compressed is not None
        finish = self.compressor.copy()
        return bytes(self.compressed) + finish.compress(_TAIL) + finish.flush(zlib.Z_FINISH)

    def _restart(self) -> None:
        """Compress the whole document again, keeping the state before its tail if it has one."""
        self.compressor = self.compressed = None
        if not _ends_with_instance(self.doc):
            return
        text = documents.dumps(self.doc)
        if not text.endswith(_TAIL):  # pragma: no cover - guaranteed by _ends_with_instance
            return
        compressor = zlib.compressobj(_LEVEL, zlib.DEFLATED, 31)  # 31: gzip header and trailer
        compressed = bytearray(compressor.compress(text[:-len(_TAIL)]))
        compressed += compressor.flush(zlib.Z_SYNC_FLUSH)
        self.compressor, self.compressed = compressor, compressed

    def _appends(self, added: list[tuple[str, str, dict[str, Any]]], before: "_Levels") -> bool:
        """True if the document changed only by `added` going after the last instance of its
        last series: new SOP instances, nothing else different."""
        now = _levels(self.doc)
        if not _ends_with_instance(self.doc) or now.fixed != before.fixed or before.last_count == 0:
            return False
        if now.last_count != before.last_count + len(added):  # a replaced instance kept its place
            return False
        last = now.series_uids[-1]
        tail = list(self.doc["Study"]["Series"][last]["Instances"])[-len(added):]
        return all(s == last and sop == t for (s, sop, _), t in zip(added, tail))


@dataclass(frozen=True, slots=True)
class _Levels:
    fixed: tuple[bytes, bytes, bytes]  # patient, study and series attributes, as JSON
    series_uids: tuple[str, ...]
    last_count: int  # instances in the last series


def _levels(doc: dict[str, Any]) -> _Levels:
    series = doc["Study"]["Series"]
    uids = tuple(series)
    return _Levels((documents.dumps(doc["Patient"]["DICOM"]), documents.dumps(doc["Study"]["DICOM"]),
                    documents.dumps({uid: s["DICOM"] for uid, s in series.items()})),
                   uids, len(series[uids[-1]]["Instances"]) if uids else 0)


def levels_before(doc: dict[str, Any]) -> _Levels:
    """Snapshot of what, besides appended instances, would force a full re-encode."""
    return _levels(doc)


def _ends_with_instance(doc: dict[str, Any]) -> bool:
    if list(doc)[-1:] != ["Study"] or list(doc["Study"])[-1:] != ["Series"]:
        return False
    series = doc["Study"]["Series"]
    last = next(reversed(series), None)
    return last is not None and list(series[last])[-1:] == ["Instances"] and bool(series[last]["Instances"])


class LatestDocuments:
    """A small LRU of `Latest` per image set; thread-safe; an entry has one user at a time."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[str, Latest] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, image_set_id: str, version: int) -> Latest | None:
        """Remove and return the entry if it is of `version` (else drop it: it is stale)."""
        with self._lock:
            entry = self._entries.pop(image_set_id, None)
        return entry if entry is not None and entry.version == version else None

    def peek(self, image_set_id: str, version: int) -> dict[str, Any] | None:
        """The document of `version` if held (read only)."""
        with self._lock:
            entry = self._entries.get(image_set_id)
            return entry.doc if entry is not None and entry.version == version else None

    def put(self, image_set_id: str, entry: Latest) -> None:
        with self._lock:
            self._entries[image_set_id] = entry
            self._entries.move_to_end(image_set_id)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
