"""Blob store on a local filesystem.

A put is atomic: the bytes go to a temp file in the target directory, which is renamed
over the key, so a reader (or a process killed mid-write) sees all of a blob or none of
it; temp files are named `.tmp-*` and never listed. A put is durable when it returns
(file fsync, rename, directory fsync), unless the store was opened with `fsync=False`.
`sync()` makes every blob under the root durable, whoever wrote it, in one call: import
workers write without fsync and the job syncs once per batch of files, before the
catalog records them (one flush for hundreds of frames instead of two per frame).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from pathlib import Path
from typing import Iterator

from tessel.errors import InvalidInput, NotFound
from tessel.files import fsync_dir, write_atomic


class FileBlobStore:
    def __init__(self, root: Path, *, fsync: bool = True) -> None:
        self.root = root
        self._root = str(root)
        self.fsync = fsync
        self.root.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"FileBlobStore({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        if key.startswith("/") or ".." in key.split("/"):
            raise InvalidInput(f"blob key {key!r} is not a relative key")
        return self.root / key

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        try:
            write_atomic(path, data, durable=self.fsync)
        except FileNotFoundError:  # the first blob of its directory
            self._make_dirs(path.parent)
            write_atomic(path, data, durable=self.fsync)

    def _make_dirs(self, directory: Path) -> None:
        missing = []
        while not directory.exists():
            missing.append(directory)
            directory = directory.parent
        for d in reversed(missing):
            try:
                d.mkdir()
            except FileExistsError:  # another writer made it first
                continue
            if self.fsync:
                fsync_dir(d.parent)

    def sync(self) -> None:
        """Make every blob under the root durable, including those other processes wrote."""
        sync_filesystem(self.root)

    def get(self, key: str) -> bytes:
        # os.open/os.read on a str path: pathlib and a buffered file object cost more than the read
        # of a frame (this is on every frame request).
        if key.startswith("/") or ".." in key.split("/"):
            raise InvalidInput(f"blob key {key!r} is not a relative key")
        try:
            fd = os.open(f"{self._root}/{key}", os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise NotFound(f"blob {key} does not exist") from None
        try:
            want = os.fstat(fd).st_size + 1  # one more byte: the first read also meets the end
            parts = []
            while chunk := os.read(fd, want):
                parts.append(chunk)
            return parts[0] if len(parts) == 1 else b"".join(parts)
        finally:
            os.close(fd)

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        try:
            with open(self._path(key), "rb") as f:
                f.seek(offset)
                return f.read(length)
        except FileNotFoundError:
            raise NotFound(f"blob {key} does not exist") from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink()
        except FileNotFoundError:
            pass

    def list(self, prefix: str) -> Iterator[str]:
        base = self._path(prefix.rstrip("/")) if prefix else self.root
        start = base if base.is_dir() else base.parent
        for dirpath, _dirs, files in os.walk(start):
            for name in files:
                if name.startswith(".tmp-"):
                    continue
                key = Path(dirpath, name).relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    yield key




def _libc_syncfs() -> object | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        return getattr(libc, "syncfs", None)
    except OSError:
        return None


_SYNCFS = _libc_syncfs()


def sync_filesystem(path: Path) -> None:
    """Flush every write on the filesystem holding `path` to disk (Linux syncfs, else sync)."""
    if _SYNCFS is None:
        os.sync()
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        if _SYNCFS(fd) != 0:  # type: ignore[operator]
            err = ctypes.get_errno()
            raise OSError(err, f"syncfs({path}) failed: {os.strerror(err)}")
    finally:
        os.close(fd)
