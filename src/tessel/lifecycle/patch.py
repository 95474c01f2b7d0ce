"""UpdateImageSetMetadata payloads applied to a metadata document (spec section 5). Pure.

A payload mirrors the document tree: `Patient.DICOM`, `Study.DICOM`,
`Study.Series.<uid>.DICOM`, `...Instances.<sop>.DICOM` / `DICOMVRs`. Removals
apply first, then updates, so an attribute named in both ends up updated.
Every rule failure raises InvalidInput naming the attribute by its path.

Rules (AHI `dicom-metadata-constraints.html`):
- never changeable: the fields AHI generates, file meta (group 0002), frame entries;
- only with force: Study/Series/SOP Instance UID and StudyID, private and unknown
  tags, sequences, multi-valued attributes, values that do not fit the VR, the
  attributes describing the stored pixels, and removing whole series or instances;
- on primary image sets the three UIDs never change, not even with force;
- each attribute at its own level (tessel.dicom.levels), unless the document
  already holds it at the level given (then that is where it lives);
- targeted series and instances must exist.
A removal may name the stored value or null/"" for "whatever it is"; a
different value is refused, so a stale payload cannot remove the wrong thing.
"""

from __future__ import annotations

import base64
import binascii
import copy
import re
from dataclasses import dataclass, field
from typing import Any

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword

from tessel.dicom.levels import level_of
from tessel.dicom.vrs import BINARY_VRS, NUMBER_FORMATS, allows_multiple, is_private
from tessel.documents import iter_instances
from tessel.errors import InvalidInput

GENERATED = frozenset({"SchemaVersion", "DatastoreID", "ImageSetID", "PixelData", "FloatPixelData",
                       "DoubleFloatPixelData", "Checksum", "Width", "Height", "MinPixelValue",
                       "MaxPixelValue", "FrameSizeInBytes"})
# Keys of an instance node that AHI writes itself (besides DICOM and DICOMVRs).
NODE_GENERATED = frozenset({"ImageFrames", "StoredTransferSyntaxUID", "ChecksumType", "ID",
                            "PixelDataChecksumFromBaseToFullResolution"})
UIDS = {"study": "StudyInstanceUID", "series": "SeriesInstanceUID", "instance": "SOPInstanceUID"}
FORCE_ONLY = frozenset({"StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "StudyID"})
# Changing these would make the stored frames decode differently: force only.
PIXEL_DESCRIPTION = frozenset({"Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit",
                               "PixelRepresentation", "SamplesPerPixel", "PhotometricInterpretation",
                               "PlanarConfiguration", "NumberOfFrames"})
LEVEL_PATHS = {"patient": "Patient.DICOM", "study": "Study.DICOM",
               "series": "Study.Series.<SeriesInstanceUID>.DICOM",
               "instance": "Study.Series.<SeriesInstanceUID>.Instances.<SOPInstanceUID>.DICOM"}

_HEX_TAG = re.compile(r"[0-9A-Fa-f]{8}")
_VR = re.compile(r"[A-Z]{2}")
_UID = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")
_INTEGER_RANGES = {"US": (0, 2**16 - 1), "SS": (-2**15, 2**15 - 1), "UL": (0, 2**32 - 1),
                   "SL": (-2**31, 2**31 - 1), "UV": (0, 2**64 - 1), "SV": (-2**63, 2**63 - 1)}
# VR -> (maximum length per value, pattern of a stripped value); None means unchecked.
_TEXT_RULES: dict[str, tuple[int | None, re.Pattern[str] | None]] = {
    "AE": (16, None), "AS": (4, re.compile(r"\d{3}[DWMY]")), "CS": (16, re.compile(r"[A-Z0-9 _]*")),
    "DA": (8, re.compile(r"\d{8}")),
    "DS": (16, re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")),
    "DT": (26, re.compile(r"\d{4}(\d{2}(\d{2}(\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?)?)?)?([+-]\d{4})?")),
    "IS": (12, re.compile(r"[+-]?\d+")), "LO": (64, None), "LT": (10240, None), "PN": (None, None),
    "SH": (16, None), "ST": (1024, None),
    "TM": (16, re.compile(r"\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?")), "UI": (64, _UID),
    "UC": (None, None), "UR": (None, None), "UT": (None, None), "AT": (8, _HEX_TAG),
}


@dataclass(frozen=True, slots=True)
class Rules:
    force: bool = False
    primary: bool = False
    # For the other image sets of a study (includeStudyImageSets): what this image set
    # does not hold is skipped instead of refused.
    lenient: bool = False


@dataclass(slots=True)
class Applied:
    doc: dict[str, Any]
    touched: set[str] = field(default_factory=set)  # levels whose attributes the payload changed

    @property
    def hierarchy_changed(self) -> bool:
        return bool(self.touched & {"patient", "study"})


def apply_updates(doc: dict[str, Any], updatable: dict[str, Any] | None,
                  removable: dict[str, Any] | None, rules: Rules) -> Applied:
    """A new document: `doc` with `removable` removed and then `updatable` set."""
    removal = _payload(removable, "removableAttributes")
    update = _payload(updatable, "updatableAttributes")
    if not _has_content(removal) and not _has_content(update):
        raise InvalidInput("DICOMUpdates names no attribute, series or instance to update or remove")
    applied = Applied(copy.deepcopy(doc))
    _Remover(applied, rules).run(removal)
    _Updater(applied, rules).run(update)
    if not any(True for _ in iter_instances(applied.doc)):
        raise InvalidInput("the update would remove every instance of the image set; "
                           "use DeleteImageSet to delete it")
    return applied


def study_part(payload: dict[str, Any] | None) -> dict[str, Any] | None:
    """The Patient and Study attributes of a payload (what includeStudyImageSets spreads)."""
    if not payload:
        return None
    part: dict[str, Any] = {"SchemaVersion": payload.get("SchemaVersion")}
    if isinstance(payload.get("Patient"), dict) and payload["Patient"].get("DICOM"):
        part["Patient"] = {"DICOM": payload["Patient"]["DICOM"]}
    if isinstance(payload.get("Study"), dict) and payload["Study"].get("DICOM"):
        part["Study"] = {"DICOM": payload["Study"]["DICOM"]}
    return part if len(part) > 1 else None


# -- payload structure ------------------------------------------------------------------------


def check_schema_version(value: Any, what: str) -> None:
    if str(value) not in ("1.1", "1.10"):
        raise InvalidInput(f"{what}: SchemaVersion must be 1.1, not {value!r}")


def _payload(payload: dict[str, Any] | None, what: str) -> dict[str, Any]:
    if payload is None:
        return {}
    if not isinstance(payload, dict):
        raise InvalidInput(f"{what} must be a JSON object")
    if "SchemaVersion" not in payload:
        raise InvalidInput(f"{what}: SchemaVersion is required (1.1)")
    check_schema_version(payload["SchemaVersion"], what)
    for key in payload:
        if key in ("SchemaVersion", "Patient", "Study"):
            continue
        if key in GENERATED:
            raise InvalidInput(f"{what}: {key} is generated by the service and cannot be changed")
        raise InvalidInput(f"{what}: unknown key {key!r}; expected SchemaVersion, Patient or Study")
    return payload


def _has_content(payload: dict[str, Any]) -> bool:
    return any(payload.get(k) for k in ("Patient", "Study"))


def node(value: Any, path: str, allowed: frozenset[str] | set[str]) -> dict[str, Any]:
    """A payload object at `path`, with only the `allowed` keys."""
    if not isinstance(value, dict):
        raise InvalidInput(f"{path} must be a JSON object")
    for key in value:
        if key not in allowed:
            if key in GENERATED or key in NODE_GENERATED:
                raise InvalidInput(f"{path}.{key} is generated by the service and cannot be changed")
            raise InvalidInput(f"{path}: unknown key {key!r}; expected {' or '.join(sorted(allowed))}")
    return value


def attributes_of(value: Any, path: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput(f"{path} must be a JSON object of attributes")
    return value


def _key(raw: Any, path: str) -> tuple[str, int]:
    """The document key (keyword, or 8 uppercase hex digits for private/unknown tags) and its tag."""
    if not isinstance(raw, str):
        raise InvalidInput(f"{path}: attribute names are strings")
    if raw in GENERATED:
        raise InvalidInput(f"{path}.{raw} is generated by the service and cannot be changed")
    if _HEX_TAG.fullmatch(raw):
        tag = int(raw, 16)
        keyword = None if is_private(tag) else keyword_for_tag(tag)
        if keyword:
            if keyword in GENERATED:
                raise InvalidInput(f"{path}.{raw} ({keyword}) is generated by the service and cannot be changed")
            return keyword, tag
        return raw.upper(), tag
    found = tag_for_keyword(raw)
    if found is None:
        raise InvalidInput(f"{path}.{raw} is not a DICOM keyword or an 8-digit hex tag")
    return raw, int(found)


def _is_tag_key(key: str) -> bool:
    return bool(_HEX_TAG.fullmatch(key))


def _home(key: str) -> str:
    return "instance" if _is_tag_key(key) else level_of(key)


def _placed(key: str, level: str, stored: dict[str, Any], path: str) -> None:
    home = _home(key)
    if home != level and key not in stored:
        raise InvalidInput(f"{path}.{key}: {key} is a {home}-level attribute; give it under {LEVEL_PATHS[home]}")


def _need_force(rules: Rules, path: str, key: str, why: str) -> None:
    if not rules.force:
        raise InvalidInput(f"{path}.{key}: {why} needs force=true")


def _multi(value: Any) -> bool:
    return isinstance(value, list) and len(value) > 1 and not any(isinstance(v, dict) for v in value)


def _sequence(value: Any) -> bool:
    return isinstance(value, list) and any(isinstance(v, dict) for v in value)


def same_value(a: Any, b: Any) -> bool:
    def norm(v: Any) -> Any:
        if isinstance(v, list):
            items = [norm(x) for x in v]
            return items[0] if len(items) == 1 and not isinstance(items[0], dict) else items
        if isinstance(v, dict):
            return {k: norm(x) for k, x in v.items()}
        return v.strip() if isinstance(v, str) else v
    return bool(norm(a) == norm(b))


def dictionary_vrs(tag: int) -> tuple[str, ...]:
    try:
        return tuple(dictionary_VR(tag).split(" or "))
    except KeyError:
        return ()


# -- removal ----------------------------------------------------------------------------------


class _Remover:
    def __init__(self, applied: Applied, rules: Rules) -> None:
        self.applied, self.rules, self.doc = applied, rules, applied.doc

    def run(self, payload: dict[str, Any]) -> None:
        if "Patient" in payload:
            patient = node(payload["Patient"], "Patient", {"DICOM"})
            self._level(self.doc["Patient"]["DICOM"], patient.get("DICOM"), "patient", "Patient.DICOM")
        if "Study" not in payload:
            return
        study = node(payload["Study"], "Study", {"DICOM", "Series"})
        self._level(self.doc["Study"]["DICOM"], study.get("DICOM"), "study", "Study.DICOM")
        for series_uid, series_payload in attributes_of(study.get("Series"), "Study.Series").items():
            path = f"Study.Series.{series_uid}"
            series = self.doc["Study"]["Series"].get(series_uid)
            if series is None:
                if self.rules.lenient:
                    continue
                raise InvalidInput(f"{path}: series {series_uid} is not in the image set")
            if series_payload == {}:
                _need_force(self.rules, "Study.Series", series_uid, "removing a whole series")
                del self.doc["Study"]["Series"][series_uid]
                self.applied.touched.add("series")
                continue
            series_node = node(series_payload, path, {"DICOM", "Instances"})
            self._level(series["DICOM"], series_node.get("DICOM"), "series", f"{path}.DICOM")
            for sop, instance_payload in attributes_of(series_node.get("Instances"), f"{path}.Instances").items():
                self._instance(series, sop, instance_payload, f"{path}.Instances")
            if not series["Instances"]:
                del self.doc["Study"]["Series"][series_uid]

    def _instance(self, series: dict[str, Any], sop: str, payload: Any, base: str) -> None:
        path = f"{base}.{sop}"
        instance = series["Instances"].get(sop)
        if instance is None:
            raise InvalidInput(f"{path}: instance {sop} is not in that series")
        if payload == {}:
            _need_force(self.rules, base, sop, "removing an instance")
            del series["Instances"][sop]
            self.applied.touched.add("instance")
            return
        instance_node = node(payload, path, {"DICOM", "DICOMVRs"})
        attributes = attributes_of(instance_node.get("DICOM"), f"{path}.DICOM")
        vrs = instance.setdefault("DICOMVRs", {})
        removed = self._level(instance["DICOM"], attributes, "instance", f"{path}.DICOM", vrs)
        for key in attributes_of(instance_node.get("DICOMVRs"), f"{path}.DICOMVRs"):
            if str(key).upper() not in removed:
                raise InvalidInput(f"{path}.DICOMVRs.{key}: a VR is removed only together with its attribute")

    def _level(self, stored: dict[str, Any], payload: Any, level: str, path: str,
                    vrs: dict[str, str] | None = None) -> set[str]:
        removed: set[str] = set()
        for raw, value in attributes_of(payload, path).items():
            key, tag = _key(raw, path)
            if tag >> 16 == 0x0002:
                raise InvalidInput(f"{path}.{key}: file meta information cannot be changed")
            if key not in stored:
                if self.rules.lenient:
                    continue
                _placed(key, level, stored, path)
                raise InvalidInput(f"{path}.{key} is not in the image set metadata, so it cannot be removed")
            if key == UIDS.get(level):
                raise InvalidInput(f"{path}.{key} identifies the {level} and cannot be removed")
            if key in FORCE_ONLY:
                _need_force(self.rules, path, key, f"removing {key}")
            if _is_tag_key(key):
                _need_force(self.rules, path, key, "removing a private or unknown attribute")
            if _sequence(stored[key]) or "SQ" in dictionary_vrs(tag):
                _need_force(self.rules, path, key, "removing a sequence")
            if _multi(stored[key]):
                _need_force(self.rules, path, key, "removing a multi-valued attribute")
            if key in PIXEL_DESCRIPTION:
                _need_force(self.rules, path, key, "removing an attribute that describes the stored pixels")
            if value not in (None, "") and not same_value(value, stored[key]):
                raise InvalidInput(f"{path}.{key}: the value given for removal does not match the stored "
                                   f"value (give the stored value, or null to remove whatever it is)")
            del stored[key]
            if vrs is not None:
                vrs.pop(key, None)
            removed.add(key)
            self.applied.touched.add(level)
        return removed


# -- updates ----------------------------------------------------------------------------------


class _Updater:
    def __init__(self, applied: Applied, rules: Rules) -> None:
        self.applied, self.rules, self.doc = applied, rules, applied.doc

    def run(self, payload: dict[str, Any]) -> None:
        if "Patient" in payload:
            patient = node(payload["Patient"], "Patient", {"DICOM"})
            self._level(self.doc["Patient"]["DICOM"], patient.get("DICOM"), "patient", "Patient.DICOM")
        if "Study" not in payload:
            return
        study = node(payload["Study"], "Study", {"DICOM", "Series"})
        self._level(self.doc["Study"]["DICOM"], study.get("DICOM"), "study", "Study.DICOM")
        renames: list[tuple[str, str]] = []
        for series_uid, series_payload in attributes_of(study.get("Series"), "Study.Series").items():
            path = f"Study.Series.{series_uid}"
            series = self.doc["Study"]["Series"].get(series_uid)
            if series is None:
                if self.rules.lenient:
                    continue
                raise InvalidInput(f"{path}: series {series_uid} is not in the image set")
            series_node = node(series_payload, path, {"DICOM", "Instances"})
            self._level(series["DICOM"], series_node.get("DICOM"), "series", f"{path}.DICOM")
            sop_renames: list[tuple[str, str]] = []
            for sop, instance_payload in attributes_of(series_node.get("Instances"), f"{path}.Instances").items():
                new_sop = self._instance(series, sop, instance_payload, f"{path}.Instances")
                if new_sop != sop:
                    sop_renames.append((sop, new_sop))
            for old, new in sop_renames:
                if any(new in other["Instances"] for other in self.doc["Study"]["Series"].values()):
                    raise InvalidInput(f"{path}.Instances.{old}.DICOM.SOPInstanceUID: SOPInstanceUID {new} "
                                       f"would occur twice in the image set")
                series["Instances"] = {new if k == old else k: v for k, v in series["Instances"].items()}
            new_uid = series["DICOM"].get("SeriesInstanceUID")
            if isinstance(new_uid, str) and new_uid != series_uid:
                renames.append((series_uid, new_uid))
        for old, new in renames:
            if new in self.doc["Study"]["Series"]:
                raise InvalidInput(f"Study.Series.{old}.DICOM.SeriesInstanceUID: series {new} is already "
                                   f"in the image set")
            self.doc["Study"]["Series"] = {new if k == old else k: v
                                           for k, v in self.doc["Study"]["Series"].items()}
        self._check_unique_sops()

    def _instance(self, series: dict[str, Any], sop: str, payload: Any, base: str) -> str:
        path = f"{base}.{sop}"
        instance = series["Instances"].get(sop)
        if instance is None:
            raise InvalidInput(f"{path}: instance {sop} is not in that series")
        instance_node = node(payload, path, {"DICOM", "DICOMVRs"})
        given_vrs = self._vrs(instance_node.get("DICOMVRs"), f"{path}.DICOMVRs")
        vrs = instance.setdefault("DICOMVRs", {})
        self._level(instance["DICOM"], instance_node.get("DICOM"), "instance", f"{path}.DICOM",
                         vrs, given_vrs)
        for key in given_vrs:
            if key not in instance["DICOM"]:
                raise InvalidInput(f"{path}.DICOMVRs.{key}: the instance has no attribute {key}")
        new_sop = instance["DICOM"].get("SOPInstanceUID", sop)
        if isinstance(new_sop, str) and new_sop != sop:
            # The file meta copy of the UID follows, so rebuilt Part 10 files stay consistent.
            if instance["DICOM"].get("MediaStorageSOPInstanceUID") == sop:
                instance["DICOM"]["MediaStorageSOPInstanceUID"] = new_sop
            return new_sop
        return sop

    def _check_unique_sops(self) -> None:
        seen: set[str] = set()
        for _series_uid, sop, _node in iter_instances(self.doc):
            if sop in seen:
                raise InvalidInput(f"SOPInstanceUID {sop} would occur twice in the image set")
            seen.add(sop)

    @staticmethod
    def _vrs(value: Any, path: str) -> dict[str, str]:
        result: dict[str, str] = {}
        for key, vr in attributes_of(value, path).items():
            if not isinstance(key, str) or not _HEX_TAG.fullmatch(key):
                raise InvalidInput(f"{path}.{key}: DICOMVRs are given for private or unknown tags "
                                   f"(8 hex digits) only")
            if not isinstance(vr, str) or not _VR.fullmatch(vr):
                raise InvalidInput(f"{path}.{key}: {vr!r} is not a VR")
            result[key.upper()] = vr
        return result

    def _level(self, stored: dict[str, Any], payload: Any, level: str, path: str,
                    vrs: dict[str, str] | None = None, given_vrs: dict[str, str] | None = None) -> None:
        for raw, value in attributes_of(payload, path).items():
            key, tag = _key(raw, path)
            if tag >> 16 == 0x0002:
                raise InvalidInput(f"{path}.{key}: file meta information cannot be changed")
            _placed(key, level, stored, path)
            value = self._checked(key, tag, value, stored, level, path, vrs, given_vrs)
            if key not in stored or not same_value(stored[key], value):
                self.applied.touched.add(level)
            stored[key] = value

    def _checked(self, key: str, tag: int, value: Any, stored: dict[str, Any], level: str, path: str,
                 vrs: dict[str, str] | None, given_vrs: dict[str, str] | None) -> Any:
        rules = self.rules
        if isinstance(value, dict):
            raise InvalidInput(f"{path}.{key}: a value is a string, number, list or null")
        if _is_tag_key(key):
            _need_force(rules, path, key, "adding or changing a private or unknown attribute")
            vr = (given_vrs or {}).get(key) or (vrs or {}).get(key)
            if vr is None or vrs is None:
                raise InvalidInput(f"{path}.{key}: give the VR of a private or unknown attribute in DICOMVRs")
            vrs[key] = vr
            candidates: tuple[str, ...] = (vr,)
        else:
            candidates = dictionary_vrs(tag)
        if key in UIDS.values():
            if key != UIDS.get(level):
                raise InvalidInput(f"{path}.{key}: {key} is changed at its own level ({LEVEL_PATHS[_home(key)]})")
            if rules.primary:
                raise InvalidInput(f"{path}.{key}: the UIDs of a primary image set cannot change, even "
                                   f"with force; copy it to a non-primary image set and change that")
            if not isinstance(value, str) or len(value) > 64 or not _UID.fullmatch(value):
                raise InvalidInput(f"{path}.{key}: {value!r} is not a valid UID")
        if key in FORCE_ONLY:
            _need_force(rules, path, key, f"changing {key}")
        if key in PIXEL_DESCRIPTION:
            _need_force(rules, path, key, "changing an attribute that describes the stored pixels")
        if "SQ" in candidates or _sequence(value) or _sequence(stored.get(key)):
            _need_force(rules, path, key, "changing a sequence")
            if value is not None and not (isinstance(value, list) and all(isinstance(v, dict) for v in value)):
                raise InvalidInput(f"{path}.{key}: a sequence is a list of objects")
            return value
        value = _shaped(tag, value, key)
        if _multi(value) or _multi(stored.get(key)):
            _need_force(rules, path, key, "changing a multi-valued attribute")
        if candidates:
            problems = [p for p in (_vr_problem(vr, value) for vr in candidates) if p]
            if len(problems) == len(candidates):
                _need_force(rules, path, key, f"a value that does not fit its VR ({problems[0]})")
        return value


def _shaped(tag: int, value: Any, key: str) -> Any:
    """Lists for attributes whose VM allows several values, scalars otherwise (as import writes them)."""
    if _is_tag_key(key):
        return value
    if allows_multiple(tag):
        return value if value is None or isinstance(value, list) else [value]
    if isinstance(value, list) and len(value) == 1:
        return value[0]
    return value


def _vr_problem(vr: str, value: Any) -> str | None:
    for item in value if isinstance(value, list) else [value]:
        if item is None:
            continue
        problem = _item_problem(vr, item)
        if problem:
            return problem
    return None


def _item_problem(vr: str, item: Any) -> str | None:
    if vr in NUMBER_FORMATS:
        if isinstance(item, bool) or not isinstance(item, (int, float)):
            return f"{vr} values are JSON numbers"
        if vr in _INTEGER_RANGES:
            low, high = _INTEGER_RANGES[vr]
            if not isinstance(item, int) and not float(item).is_integer():
                return f"{vr} values are integers"
            if not low <= int(item) <= high:
                return f"{item} is out of range for {vr}"
        return None
    if not isinstance(item, str):
        return f"{vr} values are JSON strings"
    if vr in BINARY_VRS:
        try:
            base64.b64decode(item, validate=True)
        except (binascii.Error, ValueError):
            return f"{vr} values are base64"
        return None
    limit, pattern = _TEXT_RULES.get(vr, (None, None))
    text = item.strip()
    if vr == "PN":
        if any(len(group) > 64 for group in item.split("=")):
            return "each PN component group has at most 64 characters"
        return None
    if limit is not None and len(item) > limit:
        return f"{vr} values have at most {limit} characters"
    if pattern is not None and text and not pattern.fullmatch(text):
        return f"{item!r} is not a valid {vr} value"
    if vr == "IS" and text and not -2**31 <= int(text) < 2**31:
        return f"{item} is out of range for IS"
    return None
