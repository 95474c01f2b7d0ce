"""multipart/related: what STOW-RS sends and what the checks read back."""

from __future__ import annotations

import pytest

from benchmarks.compare import multipart


def test_stow_body_splits_back_into_its_files() -> None:
    files = [b"DICM" * 10, b"\r\n--not-a-boundary\r\n", b""]
    body, content_type = multipart.stow_body(files)
    assert content_type.startswith('multipart/related; type="application/dicom"; boundary=')
    assert multipart.split(body, content_type) == files


def test_split_reads_a_quoted_boundary_and_part_headers() -> None:
    body = b'--b1\r\nContent-Type: application/octet-stream\r\nContent-Location: x\r\n\r\nPIXELS\r\n--b1--\r\n'
    assert multipart.split(body, 'multipart/related; type="application/octet-stream"; boundary="b1"') == [b"PIXELS"]


def test_split_refuses_a_body_that_is_not_multipart() -> None:
    with pytest.raises(ValueError, match="not a multipart"):
        multipart.split(b"{}", "application/json")
