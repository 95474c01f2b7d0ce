"""QIDO-RS: query parameters -> `catalog.query` -> DICOM JSON with RetrieveURLs.

Match keys are keywords or tags (`PatientID=` or `00100020=`); `includefield`
takes keywords, tags, `all` or a dotted sequence path (its top-level sequence
is returned); `fuzzymatching=true`; `limit` (default and maximum 1000, as AHI; a
larger one is served as 1000 with a Warning) and `offset`. Several values
of one key are a list match.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydicom.datadict import keyword_for_tag, tag_for_keyword

from tessel.catalog.query import query
from tessel.dicomweb import json as dicom_json
from tessel.errors import InvalidInput
from tessel.stores import Stores

DEFAULT_LIMIT = 1000
MAX_LIMIT = 1000
MAX_OFFSET = 1_000_000
MAX_INCLUDES = 50
_CONTROL = frozenset({"limit", "offset", "fuzzymatching", "includefield", "imagesetid"})


@dataclass
class Search:
    matches: dict[str, str] = field(default_factory=dict)
    include: set[str] = field(default_factory=set)
    fuzzy: bool = False
    limit: int = DEFAULT_LIMIT
    offset: int = 0
    limited: bool = False  # the caller asked for more than MAX_LIMIT


def attribute_key(text: str, *, strict: bool) -> str | None:
    """A keyword for a query key given as keyword or tag (private tags stay 8 hex digits)."""
    text = text.strip()
    if len(text) == 8 and all(c in "0123456789abcdefABCDEF" for c in text):
        tag = int(text, 16)
        if tag >> 16 & 1:
            return text.upper()
        keyword = keyword_for_tag(tag)
        if keyword:
            return keyword
        if strict:
            raise InvalidInput(f"unknown attribute tag {text}")
        return None
    if tag_for_keyword(text) is not None:
        return text
    if strict:
        raise InvalidInput(f"unknown attribute {text!r} (give a DICOM keyword or an 8-digit tag)")
    return None


def _int(name: str, text: str, low: int, high: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise InvalidInput(f"{name} must be an integer, not {text!r}") from None
    if not low <= value <= high:
        raise InvalidInput(f"{name} must be between {low} and {high}")
    return value


def parse_search(items: list[tuple[str, str]]) -> Search:
    search = Search()
    values: dict[str, list[str]] = {}
    includes = 0
    for name, value in items:
        lower = name.lower()
        if lower == "limit":
            search.limit = _int("limit", value, 0, 1 << 31)
            if search.limit > MAX_LIMIT:
                search.limit, search.limited = MAX_LIMIT, True
        elif lower == "offset":
            search.offset = _int("offset", value, 0, MAX_OFFSET)
        elif lower == "fuzzymatching":
            search.fuzzy = value.strip().lower() == "true"
        elif lower == "includefield":
            for item in value.split(","):
                includes += 1
                if includes > MAX_INCLUDES:
                    raise InvalidInput(f"at most {MAX_INCLUDES} includefield values are accepted")
                item = item.strip()
                if item.lower() == "all":
                    search.include.add("all")
                elif item:
                    key = attribute_key(item.split(".")[0], strict=False)  # unknown ones are dropped
                    if key:
                        search.include.add(key)
        elif lower in _CONTROL:
            continue
        else:
            if "." in name:
                raise InvalidInput(f"sequence matching ({name}) is not supported")
            key = attribute_key(name, strict=True)
            assert key is not None
            values.setdefault(key, []).append(value)
    search.matches = {k: "\\".join(v) for k, v in values.items()}
    return search


def search(stores: Stores, datastore_id: str, level: str, params: Search, base_url: str,
           scope: dict[str, str]) -> tuple[list[dict[str, Any]], bool]:
    """(DICOM JSON results, whether more exist beyond the limit) for a QIDO-RS search.

    `scope` holds the StudyInstanceUID / SeriesInstanceUID of the URL.
    """
    matches = dict(params.matches)
    for key, uid in scope.items():
        given = matches.get(key)
        if given is not None and given.strip() not in ("", uid):
            return [], False  # the URL and the query disagree: nothing can match both
        matches[key] = uid
    rows = query(stores.catalog, datastore_id, level, matches, fuzzy=params.fuzzy,
                 limit=params.limit + 1, offset=params.offset, include=params.include)
    more = len(rows) > params.limit
    return [_to_json(row, level, base_url) for row in rows[:params.limit]], more


def _to_json(row: dict[str, Any], level: str, base_url: str) -> dict[str, Any]:
    study = row.get("StudyInstanceUID")
    url = f"{base_url}/studies/{study}"
    if level in ("SERIES", "IMAGE") and row.get("SeriesInstanceUID"):
        url += f"/series/{row['SeriesInstanceUID']}"
    if level == "IMAGE" and row.get("SOPInstanceUID"):
        url += f"/instances/{row['SOPInstanceUID']}"
    vrs = row.get("DICOMVRs") or {}
    attrs = {k: v for k, v in row.items() if k != "DICOMVRs"}
    out = dicom_json.to_dicom_json(attrs, vrs, bulk_uri=lambda bulk_id: f"{url}/bulkdata/{bulk_id}")
    out["00081190"] = dicom_json.element("UR", url)
    return dict(sorted(out.items()))
