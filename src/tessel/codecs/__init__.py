"""Transfer syntaxes and frame codecs: decode any frame, store lossless frames as HTJ2K.

The pure core of the pixel path: bytes in, arrays or bytes out; no I/O, no settings.
"""

from tessel.codecs.errors import CodecError
from tessel.codecs.frames import decode_frame, decode_stored, encode_frame, frame_checksum
from tessel.codecs.plan import StoragePlan, storage_plan
from tessel.codecs.syntaxes import (
    EXPLICIT_VR_LE,
    HTJ2K_LOSSLESS,
    HTJ2K_LOSSLESS_RPCL,
    J2K_LOSSLESS,
    is_known_syntax,
    is_lossless_syntax,
    media_type,
)

__all__ = [
    "EXPLICIT_VR_LE",
    "HTJ2K_LOSSLESS",
    "HTJ2K_LOSSLESS_RPCL",
    "J2K_LOSSLESS",
    "CodecError",
    "StoragePlan",
    "decode_frame",
    "decode_stored",
    "encode_frame",
    "frame_checksum",
    "is_known_syntax",
    "is_lossless_syntax",
    "media_type",
    "storage_plan",
]
