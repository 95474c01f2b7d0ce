"""multipart/related bodies: building STOW-RS requests and reading WADO-RS answers (for checks)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable

_BOUNDARY = re.compile(r'boundary="?([^";,\s]+)"?', re.IGNORECASE)


def stow_body(parts: Iterable[bytes]) -> tuple[bytes, str]:
    """(body, Content-Type) of a STOW-RS request carrying these Part 10 files."""
    boundary = uuid.uuid4().hex
    chunks = []
    for part in parts:
        chunks.append(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode())
        chunks.append(part)
        chunks.append(b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f'multipart/related; type="application/dicom"; boundary={boundary}'


def split(body: bytes, content_type: str) -> list[bytes]:
    """The payloads of a multipart/related body (headers of each part dropped)."""
    match = _BOUNDARY.search(content_type)
    if match is None:
        raise ValueError(f"not a multipart answer: Content-Type {content_type!r}")
    delimiter = b"--" + match.group(1).encode()
    payloads = []
    for chunk in body.split(delimiter)[1:]:
        if chunk.startswith(b"--"):
            break  # the close delimiter
        head, sep, payload = chunk.partition(b"\r\n\r\n")
        if not sep:
            raise ValueError("a multipart part without a blank line after its headers")
        payloads.append(payload[:-2] if payload.endswith(b"\r\n") else payload)
    return payloads
