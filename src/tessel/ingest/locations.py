"""Import sources and outputs named by URI: file:///abs/path/ (and plain paths).

S3 URIs are read through boto3 by the AHI front end's import (a later adapter);
here a location lists files and writes the job's manifest files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator
from urllib.parse import unquote, urlparse

from tessel.errors import InvalidInput, Unsupported


@dataclass(frozen=True, slots=True)
class FileLocation:
    root: Path

    @property
    def uri(self) -> str:
        return self.root.as_uri() + "/"

    def files(self) -> Iterator[tuple[str, int]]:
        """(absolute path, size) of every file below the root, recursively, in a stable order."""
        if self.root.is_file():
            yield str(self.root), self.root.stat().st_size
            return
        for dirpath, dirs, names in os.walk(self.root):
            dirs.sort()
            for name in sorted(names):
                path = os.path.join(dirpath, name)
                if os.path.isfile(path):
                    yield path, os.path.getsize(path)

    def child(self, name: str) -> "FileLocation":
        return FileLocation(self.root / name)

    def write_bytes(self, relpath: str, data: bytes) -> None:
        target = self.root / relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".tmp-{target.name}")
        tmp.write_bytes(data)
        os.replace(tmp, target)


def parse_location(uri: str) -> FileLocation:
    if "://" not in uri:
        return FileLocation(Path(uri).resolve())
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise InvalidInput(f"{uri}: file URIs must be file:///absolute/path")
        return FileLocation(Path(unquote(parsed.path)))
    raise Unsupported(f"{uri}: only file:/// locations are supported by this import path")


def check_under_roots(location: FileLocation, roots: tuple[Path, ...], what: str) -> None:
    resolved = location.root.resolve()
    if not any(resolved == r or r in resolved.parents for r in roots):
        raise InvalidInput(f"{what} {location.uri} is outside the configured import roots "
                           f"({', '.join(str(r) for r in roots)}); set TESSEL_IMPORT_ROOTS")
