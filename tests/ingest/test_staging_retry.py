"""A frame whose transcoding fails once is tried again; failing twice fails the instance, nothing stored."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tessel import codecs
from tessel.blobs import BlobStore
from tessel.blobs.memory import MemoryBlobStore
from tessel.errors import TesselError
from tessel.ingest import staging
from tessel.ingest.staging import StagingOptions, stage_file
from tests.factory import make_instance

HTJ2K = "1.2.840.10008.1.2.4.201"


def flaky_encoder(monkeypatch: pytest.MonkeyPatch, failures: int) -> list[int]:
    calls = [0]
    real = codecs.encode_frame

    def encode(*args: Any, **kwargs: Any) -> bytes:
        calls[0] += 1
        if calls[0] <= failures:
            raise codecs.CodecError("HTJ2K encode failed: ojph error", transfer_syntax_uid=HTJ2K)
        return real(*args, **kwargs)

    monkeypatch.setattr(staging.codecs, "encode_frame", encode)
    return calls


def test_a_transient_codec_failure_is_tried_once_more(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_instance(tmp_path / "one.dcm", study="1.9", series="1.9.1")
    calls = flaky_encoder(monkeypatch, failures=1)
    blobs: BlobStore = MemoryBlobStore()
    staged = stage_file(tmp_path / "one.dcm", blobs, StagingOptions(datastore_id="d" * 32, lossless_format=HTJ2K))
    assert calls[0] == 2 and len(staged["frames"]) == 1
    assert list(blobs.list("ds/")), "the frame was stored after the second try"


def test_a_codec_failing_twice_fails_the_instance_and_stores_nothing(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    make_instance(tmp_path / "one.dcm", study="1.9", series="1.9.1")
    flaky_encoder(monkeypatch, failures=2)
    blobs: BlobStore = MemoryBlobStore()
    with pytest.raises(TesselError, match="ojph error"):
        stage_file(tmp_path / "one.dcm", blobs, StagingOptions(datastore_id="d" * 32, lossless_format=HTJ2K))
    assert not [k for k in blobs.list("ds/") if "/frames/" in k]
