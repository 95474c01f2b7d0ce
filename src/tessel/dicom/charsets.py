"""Specific Character Set handling: bytes of text VRs to Unicode.

pydicom does the work (ISO 2022 escape sequences, multi-valued charsets). One
gap is patched here: for ISO 2022 IR 58 (GB2312) pydicom hands the bytes,
escape sequence included, to Python's gb2312 codec, which leaves `ESC $ ) A`
in the text (pydicom 3.0.2, `charset.handled_encodings`). We strip it first.

>>> decode(b"Zhang^XiaoDong=\\x1b$)A\\xd5\\xc5^\\x1b$)A\\xd0\\xa1\\xb6\\xab", encodings_for(["", "ISO 2022 IR 58"]))
'Zhang^XiaoDong=张^小东'
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence

from pydicom.charset import convert_encodings, decode_bytes, default_encoding
from pydicom.valuerep import TEXT_VR_DELIMS

_ESC_IR58 = b"\x1b$)A"
_FRAGMENTS = re.compile(b"(^[^\x1b]+|[\x1b][^\x1b]*)")


def encodings_for(specific_character_set: str | Sequence[str] | None) -> list[str]:
    """Python codec names for a Specific Character Set value; unknown terms fall back to ASCII."""
    if specific_character_set is None or specific_character_set == "":
        return [default_encoding]
    value = [specific_character_set] if isinstance(specific_character_set, str) else list(specific_character_set)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # unknown terms: pydicom warns and falls back
        return convert_encodings(value)


def charset_values(raw: bytes) -> list[str]:
    """The values of a raw (0008,0005) element."""
    return [v.strip(" \x00") for v in raw.decode("latin-1").split("\\")]


def decode(value: bytes, encodings: Sequence[str], delimiters: set[int] = TEXT_VR_DELIMS) -> str:
    """Decode `value` as pydicom does, fixing ISO 2022 IR 58; never raises for bad bytes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # undecodable bytes become U+FFFD, as in pydicom
        if _ESC_IR58 in value and "iso_ir_58" in encodings:
            parts = []
            for fragment in _FRAGMENTS.findall(value):
                if fragment.startswith(_ESC_IR58):
                    parts.append(fragment[len(_ESC_IR58):].decode("gb2312", errors="replace"))
                else:
                    parts.append(decode_bytes(fragment, encodings, delimiters))
            return "".join(parts)
        return decode_bytes(value, encodings, delimiters)
