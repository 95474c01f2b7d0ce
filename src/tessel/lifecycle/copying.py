"""CopyImageSet on documents (spec section 5): which instances, whether they fit, the merge. Pure.

Consistency is checked attribute by attribute: every Patient, Study and Series
attribute that both image sets hold must have the same value (values compared
with surrounding spaces stripped); one side lacking an attribute is not a
conflict. Without force the destination gains the attributes only the source
has; with force its Patient/Study/Series metadata stays exactly as it was and
copied instances join its series.
"""

from __future__ import annotations

import copy
from typing import Any

from tessel.documents import iter_instances
from tessel.errors import Conflict, InvalidInput
from tessel.lifecycle.patch import attributes_of, check_schema_version, node, same_value

Pick = tuple[str, str]  # (SeriesInstanceUID, SOPInstanceUID) in the source


def select(doc: dict[str, Any], copiable: dict[str, Any] | None) -> list[Pick]:
    """The source instances named by copiableAttributes (all of them when None), in document order."""
    if copiable is None:
        return [(series_uid, sop) for series_uid, sop, _ in iter_instances(doc)]
    top = node(copiable, "copiableAttributes", {"SchemaVersion", "Study"})
    if "SchemaVersion" not in top:
        raise InvalidInput("copiableAttributes: SchemaVersion is required (1.1)")
    check_schema_version(top["SchemaVersion"], "copiableAttributes")
    study = node(top.get("Study"), "copiableAttributes.Study", {"Series"})
    wanted = attributes_of(study.get("Series"), "copiableAttributes.Study.Series")
    if not wanted:
        raise InvalidInput("copiableAttributes.Study.Series names no series to copy")
    picks: list[Pick] = []
    for series_uid, series_payload in wanted.items():
        path = f"copiableAttributes.Study.Series.{series_uid}"
        series = doc["Study"]["Series"].get(series_uid)
        if series is None:
            raise InvalidInput(f"{path}: series {series_uid} is not in the source image set")
        instances = attributes_of(node(series_payload, path, {"Instances"}).get("Instances"), f"{path}.Instances")
        if not instances:  # a series without an instance list means all of its instances
            picks.extend((series_uid, sop) for sop in series["Instances"])
            continue
        for sop, value in instances.items():
            if sop not in series["Instances"]:
                raise InvalidInput(f"{path}.Instances.{sop}: instance {sop} is not in that series")
            if value != {}:
                raise InvalidInput(f"{path}.Instances.{sop}: instances are selected with {{}}")
            picks.append((series_uid, sop))
    return picks


def frame_count(doc: dict[str, Any], picks: list[Pick]) -> int:
    series = doc["Study"]["Series"]
    return sum(len(series[s]["Instances"][sop].get("ImageFrames") or []) for s, sop in picks)


def mismatches(source: dict[str, Any], target: dict[str, Any], levels: tuple[str, ...]) -> list[str]:
    """'Level.Attribute' for each attribute both documents' levels hold with different values.

    `levels` names which of "patient", "study" and "series:<source uid>:<target uid>" to compare.
    """
    found: list[str] = []
    for level in levels:
        if level == "patient":
            a, b, name = source["Patient"]["DICOM"], target["Patient"]["DICOM"], "Patient"
        elif level == "study":
            a, b, name = source["Study"]["DICOM"], target["Study"]["DICOM"], "Study"
        else:
            _, source_uid, target_uid = level.split(":")
            a = source["Study"]["Series"][source_uid]["DICOM"]
            b = target["Study"]["Series"][target_uid]["DICOM"]
            name = "Series"
        found.extend(f"{name}.{key}" for key in a if key in b and not same_value(a[key], b[key]))
    return found


def check_consistent(source: dict[str, Any], target: dict[str, Any], picks: list[Pick]) -> None:
    """Conflict unless the source's Patient/Study/Series metadata agrees with the destination's."""
    problems = mismatches(source, target, ("patient", "study"))
    missing = []
    for series_uid in dict.fromkeys(s for s, _ in picks):
        if series_uid in target["Study"]["Series"]:
            problems.extend(mismatches(source, target, (f"series:{series_uid}:{series_uid}",)))
        else:
            missing.append(series_uid)
    reasons = []
    if problems:
        reasons.append(f"{', '.join(sorted(set(problems)))} differ")
    if missing:
        reasons.append(f"the destination has no series {', '.join(missing)}")
    if reasons:
        what = "Series" if missing and not problems else "Patient/Study/Series metadata"
        raise Conflict(f"{what} of SourceImageSet and DestinationImageSet don't match: "
                       f"{'; '.join(reasons)} (force copies the instances into the destination, "
                       f"keeping its Patient/Study/Series metadata)")


def new_document_from(source: dict[str, Any], picks: list[Pick], datastore_id: str,
                      image_set_id: str) -> dict[str, Any]:
    """A destination document holding copies of the picked instances and their hierarchy."""
    doc = copy.deepcopy({k: v for k, v in source.items() if k != "Study"})
    doc["DatastoreID"], doc["ImageSetID"] = datastore_id, image_set_id
    doc["Study"] = {"DICOM": copy.deepcopy(source["Study"]["DICOM"]), "Series": {}}
    for series_uid, sop in picks:
        source_series = source["Study"]["Series"][series_uid]
        series = doc["Study"]["Series"].setdefault(
            series_uid, {"DICOM": copy.deepcopy(source_series["DICOM"]), "Instances": {}})
        series["Instances"][sop] = copy.deepcopy(source_series["Instances"][sop])
    return doc


def merge(target: dict[str, Any], source: dict[str, Any], picks: list[Pick], *, force: bool) -> dict[str, Any]:
    """The destination document with the picked instances added (SOP Instance UIDs must be new)."""
    doc = copy.deepcopy(target)
    present = {sop for _, sop, _ in iter_instances(doc)}
    duplicates = sorted(sop for _, sop in picks if sop in present)
    if duplicates:
        raise Conflict(f"SOP Instance UIDs must be unique within an image set; the destination already "
                       f"holds {', '.join(duplicates[:5])}{' ...' if len(duplicates) > 5 else ''} "
                       f"(remove them from it first)")
    if not force:
        _fill_missing(doc["Patient"]["DICOM"], source["Patient"]["DICOM"])
        _fill_missing(doc["Study"]["DICOM"], source["Study"]["DICOM"])
    fallback = next(iter(doc["Study"]["Series"]))
    for series_uid, sop in picks:
        source_series = source["Study"]["Series"][series_uid]
        home = series_uid if series_uid in doc["Study"]["Series"] else fallback
        series = doc["Study"]["Series"][home]
        if not force:
            _fill_missing(series["DICOM"], source_series["DICOM"])
        series["Instances"][sop] = copy.deepcopy(source_series["Instances"][sop])
    return doc


def adopt_hierarchy(doc: dict[str, Any], reference: dict[str, Any]) -> dict[str, Any]:
    """`doc` with the Patient and Study metadata of `reference` (a forced promotion into a study)."""
    result = copy.deepcopy(doc)
    result["Patient"]["DICOM"] = copy.deepcopy(reference["Patient"]["DICOM"])
    result["Study"]["DICOM"] = copy.deepcopy(reference["Study"]["DICOM"])
    return result


def _fill_missing(target: dict[str, Any], source: dict[str, Any]) -> None:
    for key, value in source.items():
        target.setdefault(key, copy.deepcopy(value))
