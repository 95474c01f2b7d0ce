"""Part 10 bytes -> header, frame index and bulk references; AHI metadata document pieces.

    parsed = read_instance(path)                 # header only; raises InvalidInput(reason)
    read_frame(parsed, 0)                        # one frame's stored bytes
    levels = instance_levels(parsed, bulk_ids)   # patient / study / series / instance / vrs
"""

from tessel.dicom.document import InstanceLevels, instance_levels
from tessel.dicom.models import BulkRef, FrameRef, ParsedInstance, PixelInfo
from tessel.dicom.read import read_bulk, read_frame, read_instance, read_instance_bytes

__all__ = [
    "BulkRef",
    "FrameRef",
    "InstanceLevels",
    "ParsedInstance",
    "PixelInfo",
    "instance_levels",
    "read_bulk",
    "read_frame",
    "read_instance",
    "read_instance_bytes",
]
