"""Which VR an element has: as written (explicit VR) or from the data dictionary (implicit VR).

Private data elements of implicit-VR files are `UN` and their creators `LO`, as
AHI reports them (spec section 2: `"7FDF1001": "UN"`, `"7FDD0010": "LO"`), so
their bytes are kept exactly rather than guessed at.

>>> resolve_vr(0x00280010, None), resolve_vr(0x00291010, None), resolve_vr(0x00290010, None)
('US', 'UN', 'LO')
>>> resolve_vr(0x00280106, None, pixel_representation=1), resolve_vr(0x00280010, "UN")
('SS', 'US')
"""

from __future__ import annotations

from functools import lru_cache

from pydicom.datadict import dictionary_VM, dictionary_VR

BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
NUMBER_FORMATS = {"US": "H", "SS": "h", "UL": "L", "SL": "l", "FL": "f", "FD": "d", "UV": "Q", "SV": "q"}
# VRs whose value may hold several values separated by backslashes
SPLIT_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "PN", "SH", "TM", "UC", "UI"})


def is_private(tag: int) -> bool:
    return bool(tag >> 16 & 1)


def resolve_vr(tag: int, written: str | None, *, pixel_representation: int = 0) -> str:
    """The VR to read `tag` with; `written` is the explicit VR from the file, if any."""
    if written is not None and written != "UN":
        return written
    if tag & 0xFFFF == 0:
        return "UL"  # group length
    if is_private(tag):
        return "LO" if 0x10 <= tag & 0xFFFF <= 0xFF else "UN"
    try:
        vr = dictionary_VR(tag)
    except KeyError:
        return "UN"
    if " or " not in vr:
        return vr
    if vr == "US or SS":  # pixel-value attributes follow Pixel Representation
        return "SS" if pixel_representation == 1 else "US"
    return "OW"  # 'OB or OW', 'US or OW', 'US or SS or OW': OW keeps the bytes as they are


@lru_cache(maxsize=8192)  # asked for every element of every instance: a dictionary walk each time
def allows_multiple(tag: int) -> bool:
    """Whether the dictionary lets this attribute have more than one value (so it is a list)."""
    if is_private(tag):
        return False
    try:
        vm = dictionary_VM(tag)
    except KeyError:
        return False
    return vm not in ("1", "")
