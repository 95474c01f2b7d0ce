"""Whole-file writes that a crash cannot leave half done.

A reader sees the old file or the new one: the bytes go to a temporary file in the same
directory (created 0600), which then replaces the target in one rename. Durable writes also
sync the file before the rename and the directory after it, so that what a caller was told
is written survives a power cut.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomic(path: Path, data: bytes, *, durable: bool = True, prefix: str = ".tmp-") -> None:
    """Replace `path` with `data`. Raises FileNotFoundError when its directory is missing."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    """Make the names in `directory` (a rename, a new file) survive a power cut."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
