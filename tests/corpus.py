"""The shared DICOM corpus: where it is, its index entries, and a skip marker for tests that need it.

    from tests.corpus import corpus_dir, corpus_files, needs_corpus
    pytestmark = [needs_corpus, pytest.mark.corpus]

The corpus is `TESSEL_CORPUS` if set, else `<repo>/../shared/corpus`; see its README
for the fields of an index entry (`path`, `expect`, `reject_reason`, `frame_crc32`, ...).
"""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path
from typing import Any, Literal

import pytest

_DEFAULT = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"


def corpus_dir() -> Path | None:
    """The corpus folder (the one holding index.json), or None if there is none."""
    configured = os.environ.get("TESSEL_CORPUS")
    root = Path(configured) if configured else _DEFAULT
    return root if (root / "index.json").is_file() else None


@cache
def _entries() -> tuple[dict[str, Any], ...]:
    root = corpus_dir()
    if root is None:
        return ()
    return tuple(json.loads((root / "index.json").read_text())["files"])


def corpus_files(expect: Literal["import", "reject"] | None = None) -> list[dict[str, Any]]:
    """Index entries (all, or only those expected to import / be rejected); [] without a corpus."""
    return [e for e in _entries() if expect is None or e["expect"] == expect]


needs_corpus = pytest.mark.skipif(
    corpus_dir() is None,
    reason="corpus tests did not run: the shared DICOM corpus was not found. Put it at "
           f"{_DEFAULT} or set TESSEL_CORPUS to the folder that holds its index.json.",
)


_NO_IDS = ["study instance uid", "series instance uid"]
_FRAGMENT = ["sop class uid", "sop instance uid", "study instance uid", "series instance uid"]

# What the failure message of each `reject` file must say (lower case): the reason a person
# can act on, not just that it failed. Every reject in the index has an entry (checked).
REJECT_WORDS: dict[str, list[str]] = {
    "codec_only/htj2k_lossless_rgb8_HTJ2KLossless_08_RGB.dcm": _NO_IDS,
    "codec_only/htj2k_rgb8_HTJ2K_08_RGB.dcm": _NO_IDS,
    "codec_only/jpegls_lossless_signed15_JLSL_16_15_1_1F.dcm": _NO_IDS,
    "codec_only/jpegls_lossless_7bit_JLSL_08_07_0_1F.dcm": _NO_IDS,
    "codec_only/jpegls_near_lossless_8bit_odd_45x10.dcm": _NO_IDS,
    "codec_only/jpegls_near_lossless_16bit_50x10.dcm": _NO_IDS,
    "codec_only/jpegls_lossless_rgb_ilv1_JLSL_RGB_ILV1.dcm": ["part 10", "preamble"],
    "codec_only/jpegls_near_lossless_rgb_ilv0_JLSN_RGB_ILV0.dcm": ["part 10", "preamble"],
    "charset/chrSQEncoding.dcm": _FRAGMENT,
    "charset/chrSQEncoding1.dcm": _FRAGMENT,
    "structure/undefined_length_sq_priv_SQ.dcm": _FRAGMENT,
    "structure/nested_private_sq_nested_priv_SQ.dcm": _FRAGMENT,
    "structure/private_sq_as_UN_UN_sequence.dcm": _FRAGMENT,
    "broken/truncated_pixel_data_MR_truncated.dcm": ["ends early", "pixeldata", "8192"],
    "broken/truncated_rtplan.dcm": ["ends early", "beamsequence"],
    "broken/truncated_encapsulated_j2k_emri.dcm": ["ends early", "delimitation"],
    "broken/truncated_in_header_madehere.dcm": ["ends early"],
    "broken/bulk_data_3GiB_truncated.dcm": ["ends early", "3221225472"],
    "broken/no_preamble_no_meta_CT.dcm": ["part 10", "dicm"],
    "broken/no_meta_big_endian_rtplan.dcm": ["part 10", "dicm"],
    "broken/no_meta_rtstruct.dcm": ["part 10"],
    "broken/no_meta_private_tags_PT.dcm": ["part 10"],
    "broken/acr_nema_2_GH340.dcm": ["part 10"],
    "broken/no_preamble_DICM_in_data.dcm": ["part 10", "file meta"],
    "broken/meta_without_group_length_uid_conflict.dcm": ["contradicts", "1.2.3", "1.1"],
    "broken/meta_missing_transfer_syntax.dcm": ["transfer syntax"],
    "broken/missing_sop_class_uid_Issue111.dcm": ["sop class uid"],
    "broken/only_sop_uids_Issue196.dcm": _NO_IDS,
    "broken/no_sop_instance_uid_madehere.dcm": ["sop instance uid"],
    "broken/pixel_data_too_short_madehere.dcm": ["8000", "8192"],
    "broken/dims_exceed_pixel_data_46341.dcm": ["46341 x 46341", "needs"],
    "broken/dims_exceed_pixel_data_65535.dcm": ["65535 x 65535", "needs"],
    "broken/deeply_nested_sequence.dcm": ["nested"],
    "broken/invalid_number_of_frames_badVR.dcm": ["number of frames", "1a"],
    "broken/dicomdir.dcm": ["dicomdir"],
    "not_dicom/jpeg_frame_rgb.jpeg": ["not dicom", "jpeg"],
    "not_dicom/gzip_of_dicom_zipMR.gz": ["not dicom", "gzip"],
    "not_dicom/pdf_HelloWorld.pdf": ["not dicom", "pdf"],
    "not_dicom/empty_madehere.dcm": ["empty"],
    "not_dicom/plain_text_madehere.txt": ["not dicom", "text"],
    "not_dicom/dicm_prefix_then_garbage_madehere.dcm": ["file meta"],
}
