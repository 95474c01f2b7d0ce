"""Import sources and outputs named by URI: file:///abs/path/ (and plain paths) or s3://bucket/prefix/.

A location lists the files a job imports and writes the job's manifest files;
`tessel.ingest.s3.S3Location` is the S3 one, reached through TESSEL_S3_ENDPOINT_URL.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Protocol
from urllib.parse import unquote, urlparse

from tessel.errors import InvalidInput, NotFound, Unsupported
from tessel.files import write_atomic

if TYPE_CHECKING:
    from tessel.config import Settings


class Location(Protocol):
    @property
    def uri(self) -> str: ...

    def exists(self) -> bool: ...

    def files(self) -> Iterator[tuple[str, int]]:
        """(name a worker can read, size) of every file, recursively, in a stable order."""

    def child(self, name: str) -> "Location": ...

    def write_bytes(self, relpath: str, data: bytes) -> None: ...

    def read_bytes(self, name: str) -> bytes:
        """The bytes of one file, named as `files()` names it."""


@dataclass(frozen=True, slots=True)
class FileLocation:
    root: Path

    @property
    def uri(self) -> str:
        return self.root.as_uri() + "/"

    def exists(self) -> bool:
        return self.root.exists()

    def files(self) -> Iterator[tuple[str, int]]:
        """(absolute path, size) of every file below the root, recursively, in a stable order."""
        if self.root.is_file():
            yield str(self.root), self.root.stat().st_size
            return
        root = self.root.resolve()
        for dirpath, dirs, names in os.walk(self.root):
            dirs.sort()
            for name in sorted(names):
                path = os.path.join(dirpath, name)
                # A symbolic link out of the folder would read what the import roots keep out.
                if os.path.isfile(path) and (not os.path.islink(path) or Path(path).resolve().is_relative_to(root)):
                    yield path, os.path.getsize(path)

    def child(self, name: str) -> "FileLocation":
        return FileLocation(self.root / name)

    def write_bytes(self, relpath: str, data: bytes) -> None:
        """Atomically and durably: a reader sees the old manifest or the new one, never half."""
        target = self.root / relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(target, data, prefix=f".tmp-{target.name}-")

    def read_bytes(self, name: str) -> bytes:
        try:
            return Path(name).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"{name} does not exist") from None


def parse_location(uri: str, settings: Settings | None = None) -> Location:
    """`settings` supplies the S3 endpoint and credentials for s3:// URIs (else the AWS defaults)."""
    if uri.startswith("s3://"):
        from tessel.blobs.s3 import s3_client, split_s3_uri
        from tessel.ingest.s3 import S3Location

        bucket, prefix = split_s3_uri(uri)
        return S3Location(bucket, prefix, s3_client(settings))
    if "://" not in uri:
        return FileLocation(Path(uri).resolve())
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise InvalidInput(f"{uri}: file URIs must be file:///absolute/path")
        return FileLocation(Path(unquote(parsed.path)))
    raise Unsupported(f"{uri}: only s3://bucket/prefix and file:///absolute/path locations are supported")


def check_under_roots(location: Location, roots: tuple[Path, ...], what: str) -> None:
    """file:// locations must lie under the import roots; S3 access is governed by its credentials."""
    if not isinstance(location, FileLocation):
        return
    resolved = location.root.resolve()
    if not any(resolved == r or r in resolved.parents for r in roots):
        raise InvalidInput(f"{what} {location.uri} is outside the configured import roots "
                           f"({', '.join(str(r) for r in roots)}); set TESSEL_IMPORT_ROOTS")
