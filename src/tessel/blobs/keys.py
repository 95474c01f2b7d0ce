"""Names of every blob tessel writes. The one place that knows the layout.

Frame and bulk keys fan out on the first hex digits of their id so that no
directory (or S3 prefix listing) holds more than a few thousand entries even
with hundreds of millions of frames.
"""

from __future__ import annotations


def frame(datastore_id: str, frame_id: str) -> str:
    return f"ds/{datastore_id}/frames/{frame_id[:2]}/{frame_id[2:4]}/{frame_id}"


def bulk(datastore_id: str, bulk_id: str) -> str:
    return f"ds/{datastore_id}/bulk/{bulk_id[:2]}/{bulk_id[2:4]}/{bulk_id}"


def metadata(datastore_id: str, image_set_id: str, version_id: int) -> str:
    return f"ds/{datastore_id}/imagesets/{image_set_id[:2]}/{image_set_id}/v{version_id}.json.gz"


def staged_instance(datastore_id: str, instance_digest: str) -> str:
    """An instance's part of the metadata document, written by workers before assembly."""
    return f"ds/{datastore_id}/staged/{instance_digest[:2]}/{instance_digest}.json.gz"


def datastore_prefix(datastore_id: str) -> str:
    return f"ds/{datastore_id}/"
