"""The read path: metadata documents and frames, one lookup and one read each."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tessel import codecs, documents
from tessel.blobs import keys
from tessel.catalog.models import ImageSet, ImageSetState
from tessel.dicom.models import PixelInfo
from tessel.errors import NotFound
from tessel.stores import Stores


@dataclass(frozen=True, slots=True)
class Frame:
    data: bytes
    transfer_syntax_uid: str
    media_type: str


def get_image_set(stores: Stores, datastore_id: str, image_set_id: str) -> ImageSet:
    image_set = stores.catalog.get_image_set(datastore_id, image_set_id)
    if image_set is None:
        raise NotFound(f"image set {image_set_id} does not exist in datastore {datastore_id}")
    return image_set


def get_metadata_blob(stores: Stores, datastore_id: str, image_set_id: str,
                      version_id: int | None = None) -> bytes:
    """The gzip JSON document of a version (default: the latest)."""
    image_set = get_image_set(stores, datastore_id, image_set_id)
    if image_set.state == ImageSetState.DELETED:
        raise NotFound(f"image set {image_set_id} was deleted")
    version = stores.catalog.get_version(image_set_id, version_id or image_set.latest_version)
    if version is None:
        raise NotFound(f"image set {image_set_id} has no version {version_id}")
    return stores.blobs.get(version.metadata_key)


def get_metadata(stores: Stores, datastore_id: str, image_set_id: str,
                 version_id: int | None = None) -> dict[str, Any]:
    return documents.decode(get_metadata_blob(stores, datastore_id, image_set_id, version_id))


def get_image_frame(stores: Stores, datastore_id: str, image_set_id: str, frame_id: str) -> Frame:
    location = stores.catalog.get_frame(datastore_id, image_set_id, frame_id)
    if location is None:
        raise NotFound(f"image frame {frame_id} does not exist in image set {image_set_id}")
    data = stores.blobs.get(keys.frame(datastore_id, frame_id))
    return Frame(data, location.transfer_syntax_uid, codecs.media_type(location.transfer_syntax_uid))


def pixel_info(node: dict[str, Any]) -> PixelInfo | None:
    """The pixel description of a stored instance, from its document node."""
    d = node["DICOM"]
    if "Rows" not in d or "Columns" not in d:
        return None
    keyword = next((k for k in ("FloatPixelData", "DoubleFloatPixelData") if k in d), "PixelData")
    frames = d.get("NumberOfFrames")
    bits_allocated = int(d.get("BitsAllocated") or 8)
    return PixelInfo(
        transfer_syntax_uid=str(d.get("TransferSyntaxUID") or codecs.EXPLICIT_VR_LE),
        rows=int(d["Rows"]), columns=int(d["Columns"]),
        samples_per_pixel=int(d.get("SamplesPerPixel") or 1), bits_allocated=bits_allocated,
        bits_stored=int(d.get("BitsStored") or bits_allocated),
        high_bit=int(d.get("HighBit") if d.get("HighBit") is not None else bits_allocated - 1),
        pixel_representation=int(d.get("PixelRepresentation") or 0),
        photometric_interpretation=str(d.get("PhotometricInterpretation") or "MONOCHROME2").strip(),
        planar_configuration=int(d.get("PlanarConfiguration") or 0),
        number_of_frames=int(str(frames).strip()) if frames not in (None, "") else 1,
        pixel_keyword=keyword)


def decode_stored_frame(data: bytes, node: dict[str, Any]) -> np.ndarray:
    """Pixels of a stored frame, exactly as decoded from the source at import."""
    info = pixel_info(node)
    if info is None:
        raise NotFound("the instance has no pixel data")
    return codecs.decode_stored(data, info, node.get("StoredTransferSyntaxUID") or codecs.HTJ2K_LOSSLESS_RPCL)
