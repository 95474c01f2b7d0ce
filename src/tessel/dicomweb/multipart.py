"""multipart/related (RFC 2387) for DICOMweb: a parser over a spooled body, and a writer.

Request bodies are streamed to a temporary file (kept in memory up to
SPOOL_IN_MEMORY bytes) while their SHA-256 is computed, then parsed where they
lie: parts are (offset, length) ranges of the file, read one at a time.

>>> body = b"--b\\r\\nContent-Type: application/dicom\\r\\n\\r\\nDICM\\r\\n--b--\\r\\n"
>>> [(p.content_type, bytes(body[p.start:p.end])) for p in iter_parts(body, "b")]
[('application/dicom', b'DICM')]
>>> parse_media_type('multipart/related; type="application/dicom"; boundary=xyz')
('multipart/related', {'type': 'application/dicom', 'boundary': 'xyz'})
"""

from __future__ import annotations

import hashlib
import mmap
import secrets
import tempfile
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from tessel.errors import InvalidInput, QuotaExceeded

SPOOL_IN_MEMORY = 8 * 1024 * 1024
CRLF = b"\r\n"


def parse_media_type(value: str) -> tuple[str, dict[str, str]]:
    """('type/subtype' lower-cased, {param: value}) of a Content-Type or one Accept entry."""
    pieces = _split_params(value)
    media = pieces[0].strip().lower()
    params: dict[str, str] = {}
    for piece in pieces[1:]:
        name, _, val = piece.partition("=")
        if name.strip():
            params[name.strip().lower()] = val.strip().strip('"')
    return media, params


def _split_params(value: str) -> list[str]:
    """Split on ';' outside double quotes (type="application/dicom; x" stays whole)."""
    out, current, quoted = [], [], False
    for char in value:
        if char == '"':
            quoted = not quoted
        if char == ";" and not quoted:
            out.append("".join(current))
            current = []
        else:
            current.append(char)
    out.append("".join(current))
    return out


def split_accept(value: str) -> list[str]:
    """The entries of an Accept header (commas outside quotes)."""
    out, current, quoted = [], [], False
    for char in value:
        if char == '"':
            quoted = not quoted
        if char == "," and not quoted:
            out.append("".join(current))
            current = []
        else:
            current.append(char)
    out.append("".join(current))
    return [e.strip() for e in out if e.strip()]


# -- parsing -------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Part:
    headers: dict[str, str]
    start: int
    end: int

    @property
    def content_type(self) -> str:
        return parse_media_type(self.headers.get("content-type", "application/octet-stream"))[0]


def iter_parts(buf: Any, boundary: str) -> Iterator[Part]:
    """The parts of a multipart body held in `buf` (bytes or mmap: anything with find())."""
    marker = b"--" + boundary.encode("latin-1")
    size = len(buf)
    pos = buf.find(marker, 0)
    if pos < 0 or (pos > 0 and buf[pos - 2:pos] != CRLF):
        raise InvalidInput("the multipart body does not start with its boundary", reason="multipart")
    delimiter = CRLF + marker
    while True:
        pos += len(marker)
        if buf[pos:pos + 2] == b"--":
            return  # close delimiter
        while pos < size and buf[pos:pos + 1] in (b" ", b"\t"):
            pos += 1  # transport padding
        if buf[pos:pos + 2] != CRLF:
            raise InvalidInput("a multipart boundary is not followed by CRLF", reason="multipart")
        pos += 2
        header_end = buf.find(CRLF + CRLF, pos) if buf[pos:pos + 2] != CRLF else pos - 2
        if header_end < 0:
            raise InvalidInput("a multipart part has no end of headers", reason="multipart")
        headers = _headers(bytes(buf[pos:header_end]))
        start = header_end + 4
        end = buf.find(delimiter, start)
        if end < 0:
            raise InvalidInput("the multipart body ends without its closing boundary", reason="multipart")
        yield Part(headers, start, end)
        pos = end + 2


def _headers(raw: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in raw.split(CRLF):
        name, sep, value = line.decode("latin-1").partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return headers


@dataclass
class SpooledBody:
    """A request body on a temporary file (in memory while small), with its SHA-256."""

    file: Any = field(default_factory=lambda: tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY))
    sha256: Any = field(default_factory=hashlib.sha256)
    size: int = 0
    _map: mmap.mmap | None = None

    async def fill(self, chunks: AsyncIterator[bytes], limit: int) -> None:
        async for chunk in chunks:
            if not chunk:
                continue
            self.size += len(chunk)
            if self.size > limit:
                raise QuotaExceeded(f"the request body is larger than {limit} bytes")
            self.sha256.update(chunk)
            self.file.write(chunk)
        self.file.flush()

    def buffer(self) -> Any:
        """The body as bytes (small) or a read-only memory map of the spooled file (large)."""
        if self.size == 0:
            return b""
        rolled = getattr(self.file, "_rolled", True)
        if not rolled:
            return self.file._file.getvalue()  # still in memory (io.BytesIO): small enough to copy
        if self._map is None:
            self._map = mmap.mmap(self.file.fileno(), 0, access=mmap.ACCESS_READ)
        return self._map

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
        self.file.close()


# -- writing -----------------------------------------------------------------------------------

def new_boundary() -> str:
    return secrets.token_hex(16)


def related_type(boundary: str, part_type: str, transfer_syntax: str | None = None) -> str:
    """The Content-Type of a multipart/related response."""
    value = f'multipart/related; type="{part_type}"; boundary={boundary}'
    return value + (f"; transfer-syntax={transfer_syntax}" if transfer_syntax else "")


def part_header(boundary: str, content_type: str, location: str | None = None) -> bytes:
    lines = [f"--{boundary}", f"Content-Type: {content_type}"]
    if location:
        lines.append(f"Content-Location: {location}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def encode(boundary: str, parts: Iterable[tuple[str, bytes]]) -> bytes:
    """A whole multipart body from (content type, data) pairs."""
    chunks: list[bytes] = []
    for content_type, data in parts:
        chunks += [part_header(boundary, content_type), data, CRLF]
    chunks.append(f"--{boundary}--\r\n".encode("latin-1"))
    return b"".join(chunks)


def stream(boundary: str, parts: Iterable[tuple[str, bytes]]) -> Iterator[bytes]:
    """As `encode`, one part at a time (for StreamingResponse)."""
    for content_type, data in parts:
        yield part_header(boundary, content_type) + data + CRLF
    yield f"--{boundary}--\r\n".encode("latin-1")
