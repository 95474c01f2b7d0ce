"""multipart/related (RFC 2387) for DICOMweb: a streaming parser, and a writer.

STOW-RS bodies are parsed as they arrive (`StreamParser`), so a part can be
staged while the next one is still on the wire. SigV4-signed bodies whose
hash is only known at the end are spooled first (`SpooledBody`).

>>> parser = StreamParser("b")
>>> parser.feed(b"--b\\r\\nContent-Type: application/dicom\\r\\n\\r\\nDI") + parser.feed(b"CM\\r\\n--b--\\r\\n")
[PartStart(headers={'content-type': 'application/dicom'}), PartData(data=b'DICM'), PartEnd()]
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


# -- parsing (streamed) --------------------------------------------------------------------------

MAX_HEADER_BYTES = 16 * 1024


@dataclass(frozen=True, slots=True)
class PartStart:
    """A part begins: its headers (names lower-cased)."""

    headers: dict[str, str]

    def content_type(self, default: str) -> str:
        """The part's media type; a part without Content-Type has the request's `type`."""
        return parse_media_type(self.headers.get("content-type") or default)[0]


@dataclass(frozen=True, slots=True)
class PartData:
    data: bytes


@dataclass(frozen=True, slots=True)
class PartEnd:
    pass


Event = PartStart | PartData | PartEnd


class StreamParser:
    """An incremental multipart/related (RFC 2046) parser: `feed` chunks as they arrive, get events.

    Only a delimiter's length of bytes is held back between chunks, so a part of any size streams
    through in bounded memory. `close` checks that the body ended with its close delimiter.
    """

    def __init__(self, boundary: str) -> None:
        if not boundary or len(boundary) > 200:
            raise InvalidInput("the multipart boundary is missing or longer than 200 characters",
                               reason="multipart")
        self._dash = b"--" + boundary.encode("latin-1")
        self._delimiter = CRLF + self._dash
        self._buf = bytearray()
        self._state = "preamble"  # preamble | after-delimiter | headers | body | done
        self.parts = 0

    def feed(self, chunk: bytes) -> list[Event]:
        self._buf += chunk
        events: list[Event] = []
        while self._step(events):
            pass
        return events

    def close(self) -> list[Event]:
        events = self.feed(b"")
        if self._state != "done":
            where = {"preamble": "does not start with its boundary", "headers": "ends inside a part's headers",
                     "body": "ends without its closing boundary",
                     "after-delimiter": "ends without its closing boundary"}[self._state]
            raise InvalidInput(f"the multipart body {where}", reason="multipart")
        return events

    def _step(self, events: list[Event]) -> bool:
        buf = self._buf
        if self._state == "preamble":
            # The first boundary may open the body or follow a preamble line.
            at = buf.find(self._dash)
            if at < 0 or (at > 0 and buf[at - 2:at] != CRLF):
                if len(buf) > MAX_HEADER_BYTES:
                    raise InvalidInput("the multipart body does not start with its boundary", reason="multipart")
                return False
            del buf[:at + len(self._dash)]
            self._state = "after-delimiter"
            return True
        if self._state == "after-delimiter":
            if len(buf) < 2:
                return False
            if buf[:2] == b"--":
                self._state = "done"  # the epilogue after the close delimiter is ignored
                buf.clear()
                return False
            end = buf.find(CRLF)
            if end < 0:
                if len(buf) > 256:
                    raise InvalidInput("a multipart boundary is not followed by CRLF", reason="multipart")
                return False
            if buf[:end].strip(b" \t"):
                raise InvalidInput("a multipart boundary is not followed by CRLF", reason="multipart")
            del buf[:end + 2]
            self._state = "headers"
            return True
        if self._state == "headers":
            if buf[:2] == CRLF:  # a part without headers
                headers: dict[str, str] = {}
                del buf[:2]
            else:
                end = buf.find(CRLF + CRLF)
                if end < 0:
                    if len(buf) > MAX_HEADER_BYTES:
                        raise InvalidInput("a multipart part's headers are longer than 16 KB", reason="multipart")
                    return False
                headers = _headers(bytes(buf[:end]))
                del buf[:end + 4]
            self.parts += 1
            events.append(PartStart(headers))
            self._state = "body"
            return True
        if self._state == "body":
            at = buf.find(self._delimiter)
            if at < 0:
                keep = len(self._delimiter) - 1
                if len(buf) > keep:
                    events.append(PartData(bytes(buf[:len(buf) - keep])))
                    del buf[:len(buf) - keep]
                return False
            if at:
                events.append(PartData(bytes(buf[:at])))
            events.append(PartEnd())
            del buf[:at + len(self._delimiter)]
            self._state = "after-delimiter"
            return True
        return False


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

    async def chunks(self, size: int = 1 << 20) -> AsyncIterator[bytes]:
        """The spooled body again, a chunk at a time."""
        buf = self.buffer()
        for start in range(0, len(buf), size):
            yield bytes(buf[start:start + size])

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
