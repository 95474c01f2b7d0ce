"""The DICOM hierarchical query model shared by QIDO-RS and DIMSE C-FIND.

Served from the catalog's query index only (tables dicom_studies, dicom_series,
dicom_instances), never by reading documents. The index holds primary image
sets only, as DICOMweb and C-FIND see them (AHI), and `reindex_image_set`
rewrites an image set's rows in the transaction that commits each version.

    query(catalog, datastore_id, "STUDY", {"PatientName": "doe*", "StudyDate": "2024-"})

returns one dict per matching entity: keyword -> value as the image set
document holds it (text VRs, IS and DS as strings or lists of strings; binary
numbers as numbers; SQ as lists of dicts; private tags by 8-hex key, with their
VRs under "DICOMVRs"; bulk values as {"BulkDataID", "Length"}), plus the
computed attributes of the level (NumberOfStudyRelated*, ModalitiesInStudy,
SOPClassesInStudy, NumberOfSeriesRelatedInstances, NumberOfPatientRelated*)
as strings / lists of strings. `tessel.dicom.fromjson.dataset_from_attributes`
turns one into a pydicom Dataset.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Callable, Iterable, Iterator, NamedTuple, Sequence

import orjson
import sqlalchemy as sa
from pydicom.datadict import dictionary_VR, tag_for_keyword
from sqlalchemy.engine import Connection

from tessel.catalog.matching import (Condition, Kind, kind_for_vr, matches, name_key, name_words,
                                     normal_date, normal_time, parse, to_sql)
from tessel.catalog.models import ImageSetState
from tessel.catalog.sql.tables import (dicom_instances, dicom_series, dicom_studies, image_set_versions,
                                       image_sets)
from tessel.dicom.levels import level_of
from tessel.documents import int_of, text_of
from tessel.errors import InvalidInput

LEVELS = ("PATIENT", "STUDY", "SERIES", "IMAGE")
PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_CHUNK = 500

# Return keys of each level (PS3.18 Table 10.6.3-3/4/5, PS3.4 C.6.1.1 required and unique keys).
PATIENT_RETURN = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex",
                  "NumberOfPatientRelatedStudies", "NumberOfPatientRelatedSeries",
                  "NumberOfPatientRelatedInstances")
STUDY_RETURN = ("StudyDate", "StudyTime", "AccessionNumber", "InstanceAvailability", "ModalitiesInStudy",
                "SOPClassesInStudy", "ReferringPhysicianName", "TimezoneOffsetFromUTC", "PatientName",
                "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyID",
                "StudyDescription", "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances")
SERIES_RETURN = ("Modality", "TimezoneOffsetFromUTC", "SeriesDescription", "SeriesInstanceUID",
                 "SeriesNumber", "SeriesDate", "SeriesTime", "BodyPartExamined",
                 "NumberOfSeriesRelatedInstances", "PerformedProcedureStepStartDate",
                 "PerformedProcedureStepStartTime", "RequestAttributesSequence", "StudyInstanceUID")
INSTANCE_RETURN = ("SOPClassUID", "SOPInstanceUID", "InstanceAvailability", "TimezoneOffsetFromUTC",
                   "InstanceNumber", "Rows", "Columns", "BitsAllocated", "NumberOfFrames",
                   "StudyInstanceUID", "SeriesInstanceUID")
COMPUTED = frozenset({"NumberOfPatientRelatedStudies", "NumberOfPatientRelatedSeries",
                      "NumberOfPatientRelatedInstances", "NumberOfStudyRelatedSeries",
                      "NumberOfStudyRelatedInstances", "NumberOfSeriesRelatedInstances",
                      "ModalitiesInStudy", "SOPClassesInStudy", "InstanceAvailability"})
# Taken from an instance into the series row: the General Series module has them, AHI files them
# with the instance.
_SERIES_FROM_INSTANCE = ("PerformedProcedureStepStartDate", "PerformedProcedureStepStartTime",
                         "TimezoneOffsetFromUTC")

# keyword -> (column, kind[, words column]) per index table
_STUDY_COLUMNS: dict[str, tuple[Any, Kind, Any]] = {
    "StudyInstanceUID": (dicom_studies.c.study_instance_uid, "uid", None),
    "PatientID": (dicom_studies.c.patient_id, "text", None),
    "PatientName": (dicom_studies.c.patient_name, "pn", dicom_studies.c.patient_name_words),
    "PatientBirthDate": (dicom_studies.c.patient_birth_date, "date", None),
    "PatientSex": (dicom_studies.c.patient_sex, "text", None),
    "StudyDate": (dicom_studies.c.study_date, "date", None),
    "StudyTime": (dicom_studies.c.study_time, "time", None),
    "AccessionNumber": (dicom_studies.c.accession_number, "text", None),
    "StudyID": (dicom_studies.c.study_id, "text", None),
    "StudyDescription": (dicom_studies.c.study_description, "text", None),
    "ReferringPhysicianName": (dicom_studies.c.referring_physician_name, "pn",
                               dicom_studies.c.referring_physician_name_words),
    "ModalitiesInStudy": (dicom_studies.c.modalities_in_study, "multi", None),
    "SOPClassesInStudy": (dicom_studies.c.sop_classes_in_study, "multi", None),
}
_SERIES_COLUMNS: dict[str, tuple[Any, Kind, Any]] = {
    "SeriesInstanceUID": (dicom_series.c.series_instance_uid, "uid", None),
    "Modality": (dicom_series.c.modality, "text", None),
    "SeriesNumber": (dicom_series.c.series_number, "int", None),
    "SeriesDescription": (dicom_series.c.series_description, "text", None),
    "SeriesDate": (dicom_series.c.series_date, "date", None),
    "SeriesTime": (dicom_series.c.series_time, "time", None),
    "BodyPartExamined": (dicom_series.c.body_part_examined, "text", None),
}
_INSTANCE_COLUMNS: dict[str, tuple[Any, Kind, Any]] = {
    "SOPInstanceUID": (dicom_instances.c.sop_instance_uid, "uid", None),
    "SOPClassUID": (dicom_instances.c.sop_class_uid, "uid", None),
    "InstanceNumber": (dicom_instances.c.instance_number, "int", None),
}
_DEPTH = {"PATIENT": 0, "STUDY": 1, "SERIES": 2, "IMAGE": 3}
_KEY_DEPTH = {"patient": 0, "study": 1, "series": 2, "instance": 3}


# -- writing the index -------------------------------------------------------------------------

def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _pixel_node(node: dict[str, Any]) -> str | None:
    """The little of an instance node that decoding its frames needs (retrieve.pixel_info takes it)."""
    d = node["DICOM"]
    if "Rows" not in d or "Columns" not in d:
        return None
    keys = ("TransferSyntaxUID", "Rows", "Columns", "SamplesPerPixel", "BitsAllocated", "BitsStored",
            "HighBit", "PixelRepresentation", "PhotometricInterpretation", "PlanarConfiguration",
            "NumberOfFrames", *PIXEL_KEYWORDS)
    mini = {"DICOM": {k: d[k] for k in keys if k in d}}
    if node.get("StoredTransferSyntaxUID"):
        mini["StoredTransferSyntaxUID"] = node["StoredTransferSyntaxUID"]
    return _dumps(mini)


def _lock_study(conn: Connection, datastore_id: str, study_uid: str) -> None:
    """Serialise study-row refreshes of concurrent writers (SQLite has one writer anyway)."""
    if conn.dialect.name == "postgresql":
        key = int.from_bytes(hashlib.blake2b(f"{datastore_id}/{study_uid}".encode(), digest_size=8).digest(),
                             "big", signed=True)
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})


# The statements every commit runs, built once: building and keying SQLAlchemy statements
# cost more than running them (a STOW-RS or C-STORE commit runs a dozen).
_OLD_STUDIES = sa.select(dicom_series.c.study_instance_uid).where(
    dicom_series.c.image_set_id == sa.bindparam("image_set_id"))
_DELETE_SERIES = sa.delete(dicom_series).where(dicom_series.c.image_set_id == sa.bindparam("image_set_id"))
_DELETE_ALL_INSTANCES = sa.delete(dicom_instances).where(
    dicom_instances.c.image_set_id == sa.bindparam("image_set_id"))
_DELETE_INSTANCES = sa.delete(dicom_instances).where(
    dicom_instances.c.image_set_id == sa.bindparam("image_set_id"),
    dicom_instances.c.sop_instance_uid.in_(sa.bindparam("sops", expanding=True)))
_INSTANCE_DIGESTS = sa.select(dicom_instances.c.sop_instance_uid, dicom_instances.c.digest).where(
    dicom_instances.c.image_set_id == sa.bindparam("image_set_id"))
_INSERT_SERIES = sa.insert(dicom_series)
_INSERT_INSTANCES = sa.insert(dicom_instances)
_STUDY = (dicom_studies.c.datastore_id == sa.bindparam("datastore_id"),
          dicom_studies.c.study_instance_uid == sa.bindparam("study_uid"))
_DELETE_STUDY = sa.delete(dicom_studies).where(*_STUDY)
_STUDY_SERIES = sa.select(dicom_series.c.modality, dicom_series.c.number_of_instances, dicom_series.c.updated_at,
                          dicom_series.c.study_attrs).where(
    dicom_series.c.datastore_id == sa.bindparam("datastore_id"),
    dicom_series.c.study_instance_uid == sa.bindparam("study_uid"))
_STUDY_SOP_CLASSES = sa.select(dicom_instances.c.sop_class_uid).distinct().where(
    dicom_instances.c.datastore_id == sa.bindparam("datastore_id"),
    dicom_instances.c.study_instance_uid == sa.bindparam("study_uid"))
_INSERT_STUDY = sa.insert(dicom_studies)


def reindex_image_set(catalog: Any, conn: Connection, datastore_id: str, image_set_id: str,
                      doc: dict[str, Any] | None, *, changed: set[str] | None = None) -> None:
    """(Re)write the query rows of an image set from its document, in the caller's transaction.

    Removes them when `doc` is None, or the image set is deleted or not primary.
    Call it after the image set row is written (it reads is_primary, state,
    latest_version and updated_at from it). `changed`: the SOP Instance UIDs the caller
    added or replaced, when it knows no other instance row changed (ingest adding to a
    series): only their rows are rebuilt, so adding one instance costs one instance.
    """
    image_set = catalog.get_image_set(datastore_id, image_set_id, conn)
    at = {"image_set_id": image_set_id}
    old_studies = {r[0] for r in conn.execute(_OLD_STUDIES, at)}
    keep = (doc is not None and image_set is not None and image_set.is_primary
            and image_set.state != ImageSetState.DELETED)
    conn.execute(_DELETE_SERIES, at)
    if not keep or doc is None:
        conn.execute(_DELETE_ALL_INSTANCES, at)
        for study_uid in sorted(old_studies):
            _refresh_study(conn, datastore_id, study_uid)
        return
    assert image_set is not None
    study_attrs = {**doc["Patient"]["DICOM"], **doc["Study"]["DICOM"]}
    study_uid = text_of(study_attrs.get("StudyInstanceUID")) or image_set.study_instance_uid
    old: dict[str, str] = {}
    if changed is None:
        old = {r.sop_instance_uid: r.digest for r in conn.execute(_INSTANCE_DIGESTS, at)}
    series_rows: list[dict[str, Any]] = []
    instance_rows: list[dict[str, Any]] = []
    study_json = _dumps(study_attrs)
    for series_uid, series in doc["Study"]["Series"].items():
        series_attrs = dict(series["DICOM"])
        first: dict[str, Any] | None = None
        first_number = 0
        for sop_uid, node in series["Instances"].items():
            number = int_of(node["DICOM"].get("InstanceNumber")) or 0
            if changed is None or sop_uid in changed:
                instance_rows.append(_instance_row(datastore_id, image_set_id, study_uid, series_uid, sop_uid, node))
            if first is None or number < first_number:
                first, first_number = node["DICOM"], number
        for key in _SERIES_FROM_INSTANCE:
            if key not in series_attrs and first is not None and first.get(key) is not None:
                series_attrs[key] = first[key]
        series_rows.append({
            "image_set_id": image_set_id, "series_instance_uid": series_uid, "datastore_id": datastore_id,
            "study_instance_uid": study_uid, "version": image_set.latest_version,
            "modality": text_of(series_attrs.get("Modality")), "series_number": int_of(series_attrs.get("SeriesNumber")),
            "series_description": text_of(series_attrs.get("SeriesDescription")),
            "series_date": normal_date(text_of(series_attrs.get("SeriesDate"))),
            "series_time": normal_time(text_of(series_attrs.get("SeriesTime"))),
            "body_part_examined": text_of(series_attrs.get("BodyPartExamined")),
            "number_of_instances": len(series["Instances"]), "updated_at": image_set.updated_at,
            "attrs": _dumps(series_attrs), "study_attrs": study_json})
    if changed is None:
        fresh = {r["sop_instance_uid"] for r in instance_rows}
        stale = [sop for sop, digest in old.items() if sop not in fresh]
        rewrite = [r for r in instance_rows if old.get(r["sop_instance_uid"]) != r["digest"]]
        stale += [r["sop_instance_uid"] for r in rewrite if r["sop_instance_uid"] in old]
    else:
        stale, rewrite = sorted(changed), instance_rows
    for chunk in _chunks(stale):
        conn.execute(_DELETE_INSTANCES, {"image_set_id": image_set_id, "sops": list(chunk)})
    if series_rows:
        conn.execute(_INSERT_SERIES, series_rows)
    for chunk in _chunks(rewrite):
        conn.execute(_INSERT_INSTANCES, list(chunk))
    for uid in sorted(old_studies | {study_uid}):
        _refresh_study(conn, datastore_id, uid)


def _instance_row(datastore_id: str, image_set_id: str, study_uid: str, series_uid: str, sop_uid: str,
                  node: dict[str, Any]) -> dict[str, Any]:
    d = node["DICOM"]
    attrs = _dumps({k: v for k, v in d.items() if k not in PIXEL_KEYWORDS})
    vrs = _dumps(node["DICOMVRs"]) if node.get("DICOMVRs") else None
    pixel = _pixel_node(node)
    frames = len(node.get("ImageFrames") or [])
    stored = node.get("StoredTransferSyntaxUID")
    digest = hashlib.blake2b("\x00".join((study_uid, series_uid, attrs, vrs or "", pixel or "", str(frames),
                                          str(stored))).encode(), digest_size=16).hexdigest()
    return {"image_set_id": image_set_id, "sop_instance_uid": sop_uid, "datastore_id": datastore_id,
            "study_instance_uid": study_uid, "series_instance_uid": series_uid,
            "sop_class_uid": text_of(d.get("SOPClassUID")), "instance_number": int_of(d.get("InstanceNumber")),
            "number_of_frames": frames, "stored_transfer_syntax_uid": stored if frames else None,
            "pixel": pixel, "digest": digest, "attrs": attrs, "vrs": vrs}


def _refresh_study(conn: Connection, datastore_id: str, study_uid: str) -> None:
    """Recompute a study's row from its series rows (one row per primary series of the study)."""
    _lock_study(conn, datastore_id, study_uid)
    study = {"datastore_id": datastore_id, "study_uid": study_uid}
    conn.execute(_DELETE_STUDY, study)
    rows = conn.execute(_STUDY_SERIES, study).all()
    if not rows:
        return
    newest = max(rows, key=lambda r: r.updated_at)
    attrs = json.loads(newest.study_attrs)
    sop_classes = sorted(r[0] for r in conn.execute(_STUDY_SOP_CLASSES, study) if r[0])
    modalities = sorted({r.modality for r in rows if r.modality})
    patient_name = text_of(attrs.get("PatientName"))
    referring = text_of(attrs.get("ReferringPhysicianName"))
    conn.execute(_INSERT_STUDY, dict(
        datastore_id=datastore_id, study_instance_uid=study_uid, patient_id=text_of(attrs.get("PatientID")),
        patient_name=name_key(patient_name), patient_name_words=name_words(patient_name),
        patient_birth_date=normal_date(text_of(attrs.get("PatientBirthDate"))),
        patient_sex=text_of(attrs.get("PatientSex")), study_date=normal_date(text_of(attrs.get("StudyDate"))),
        study_time=normal_time(text_of(attrs.get("StudyTime"))),
        accession_number=text_of(attrs.get("AccessionNumber")), study_id=text_of(attrs.get("StudyID")),
        study_description=text_of(attrs.get("StudyDescription")),
        referring_physician_name=name_key(referring), referring_physician_name_words=name_words(referring),
        modalities_in_study=_multi(modalities), sop_classes_in_study=_multi(sop_classes),
        number_of_series=len(rows), number_of_instances=sum(r.number_of_instances for r in rows),
        updated_at=newest.updated_at, attrs=newest.study_attrs))


def _multi(values: Sequence[str]) -> str | None:
    return "\\" + "\\".join(values) + "\\" if values else None


def _split_multi(value: str | None) -> list[str]:
    return [v for v in (value or "").split("\\") if v]


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def backfill(catalog: Any, load_document: Any) -> int:
    """Index primary image sets that have no query rows yet (committed before migration 0004).

    `load_document(metadata_key)` returns a decoded document. Returns how many were indexed.
    """
    query = (sa.select(image_sets.c.datastore_id, image_sets.c.id, image_set_versions.c.metadata_key)
             .join(image_set_versions, sa.and_(image_set_versions.c.image_set_id == image_sets.c.id,
                                               image_set_versions.c.version_id == image_sets.c.latest_version))
             .where(image_sets.c.is_primary.is_(True), image_sets.c.state != ImageSetState.DELETED.value,
                    ~sa.exists().where(dicom_series.c.image_set_id == image_sets.c.id)))
    with catalog.read() as conn:
        pending = conn.execute(query).all()
    for datastore_id, image_set_id, key in pending:
        doc = load_document(key)
        if not doc["Study"]["Series"]:
            continue
        with catalog.write() as conn:
            reindex_image_set(catalog, conn, datastore_id, image_set_id, doc)
    return len(pending)


# -- querying ----------------------------------------------------------------------------------

def keyword_level(keyword: str) -> str:
    """patient | study | series | instance: where an attribute lives in the document and the index."""
    if keyword in ("NumberOfPatientRelatedStudies", "NumberOfPatientRelatedSeries",
                   "NumberOfPatientRelatedInstances"):
        return "patient"
    if keyword in ("ModalitiesInStudy", "SOPClassesInStudy", "NumberOfStudyRelatedSeries",
                   "NumberOfStudyRelatedInstances"):
        return "study"
    if keyword == "NumberOfSeriesRelatedInstances" or keyword in _SERIES_FROM_INSTANCE:
        return "series"
    if keyword == "InstanceAvailability":
        return "any"
    return level_of(keyword)


def _vr(keyword: str) -> str:
    try:
        tag = tag_for_keyword(keyword)
        return dictionary_VR(tag) if tag is not None else "UN"
    except KeyError:
        return "UN"


def query(catalog: Any, datastore_id: str, level: str, matches: dict[str, str], *, fuzzy: bool = False,
          limit: int | None = None, offset: int = 0, include: set[str] | None = None,
          visible_studies: Callable[[list[str]], set[str]] | None = None) -> list[dict[str, Any]]:
    """Entities of `level` matching every key of `matches`, ordered as QIDO-RS orders them:
    studies (and patients) most recently updated first, series by SeriesNumber, instances by
    InstanceNumber. Keys of a level below `level` are ignored (Modality at STUDY level means
    ModalitiesInStudy). `visible_studies` (study UIDs -> those the caller may see whole)
    leaves every entity of the other studies out."""
    level = level.upper()
    if level not in _DEPTH:
        raise InvalidInput(f"query level {level!r} is not one of {', '.join(LEVELS)}")
    if offset < 0 or (limit is not None and limit < 0):
        raise InvalidInput("limit and offset must not be negative")
    depth = _DEPTH[level]
    matches = dict(matches)
    if depth <= 1 and "Modality" in matches:
        matches.setdefault("ModalitiesInStudy", matches.pop("Modality"))
    include = set(include or ())
    python_conditions: list[tuple[str, str, Condition]] = []  # (level, keyword, condition)
    dialect = catalog.engine.dialect.name
    columns = {**_STUDY_COLUMNS, **(_SERIES_COLUMNS if depth >= 2 else {}),
               **(_INSTANCE_COLUMNS if depth >= 3 else {})}
    by_column: list[tuple[str, Condition, Any, Any]] = []  # (keyword, condition, column, words)
    for keyword, value in matches.items():
        where = keyword_level(keyword)
        if where != "any" and _KEY_DEPTH.get(where, 3) > max(depth, 1):
            continue  # a key below the query level: not matched, not returned
        if keyword in columns:
            column, kind, words = columns[keyword]
            condition = parse(value, kind, fuzzy=fuzzy)
            if condition is None:
                continue
            if kind == "multi" and any(t.wildcard for t in condition.terms):
                python_conditions.append(("study", keyword, condition))
            else:
                by_column.append((keyword, condition, column, words))
        elif keyword not in COMPUTED:
            condition = parse(value, kind_for_vr(_vr(keyword)), fuzzy=fuzzy)
            if condition is not None and _vr(keyword) != "SQ":
                python_conditions.append(("study" if where == "patient" else where, keyword, condition))
    returned = _return_keys(depth, matches, include)
    # Paging goes to SQL unless rows are filtered (or grouped) after it.
    in_sql = not python_conditions and depth != 0 and visible_studies is None
    page = (limit, offset) if in_sql else (None, 0)
    skip = 0 if in_sql else offset
    exact = _exact_study_key(depth, by_column, python_conditions, page) if in_sql else None
    if exact is not None:  # studies by PatientID / AccessionNumber: one prepared SELECT
        keyword, value = exact
        found = catalog.hot.rows(_STUDIES_BY[keyword], {"datastore_id": datastore_id, "value": value,
                                                        "limit": page[0], "offset": page[1]})
        return [_result(row, depth, returned, include) for row in map(_study_row, map(_StudyRow._make, found))]
    sql_conditions = [to_sql(condition, column, dialect, words) for _, condition, column, words in by_column]
    with catalog.read() as conn:
        if depth <= 1:
            rows: Iterable[dict[str, Any]] = _studies(conn, datastore_id, sql_conditions, page)
        elif depth == 2:
            rows = _series(conn, datastore_id, sql_conditions, page)
        else:
            rows = _instances(conn, datastore_id, sql_conditions, page)
        if visible_studies is not None:
            rows = _visible(rows, visible_studies)
        if depth == 0:
            rows = _patients(rows)
        if python_conditions:
            rows = (r for r in rows if all(matches_level(r, lvl, kw, cond) for lvl, kw, cond in python_conditions))
        out: list[dict[str, Any]] = []
        for index, row in enumerate(rows):
            if index < skip:
                continue
            if limit is not None and len(out) >= limit:
                break
            out.append(_result(row, depth, returned, include))
    return out


def _visible(rows: Iterable[dict[str, Any]], visible_studies: Callable[[list[str]], set[str]],
             batch: int = 200) -> Iterator[dict[str, Any]]:
    chunk: list[dict[str, Any]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= batch:
            shown = visible_studies(list({r["study_uid"] for r in chunk}))
            yield from (r for r in chunk if r["study_uid"] in shown)
            chunk = []
    if chunk:
        shown = visible_studies(list({r["study_uid"] for r in chunk}))
        yield from (r for r in chunk if r["study_uid"] in shown)


def study_image_sets(catalog: Any, datastore_id: str, study_uids: Sequence[str]) -> dict[str, set[str]]:
    """The primary image sets of each study (the query index's), by Study Instance UID."""
    out: dict[str, set[str]] = {uid: set() for uid in study_uids}
    with catalog.read() as conn:
        for uids in _chunks(list(study_uids)):
            for r in conn.execute(sa.select(dicom_series.c.study_instance_uid, dicom_series.c.image_set_id).where(
                    dicom_series.c.datastore_id == datastore_id, dicom_series.c.study_instance_uid.in_(uids))):
                out[r.study_instance_uid].add(r.image_set_id)
    return out


def matches_level(row: dict[str, Any], level: str, keyword: str, condition: Condition) -> bool:
    attrs = row.get(level) or {}
    if keyword == "ModalitiesInStudy":
        return matches(condition, row["computed"].get("ModalitiesInStudy"))
    return matches(condition, attrs.get(keyword))


def _return_keys(depth: int, matches: dict[str, str], include: set[str]) -> list[str]:
    keys: list[str] = []
    if depth == 0:
        keys += PATIENT_RETURN
    if depth >= 1:
        keys += STUDY_RETURN if depth == 1 else ()
    if depth >= 2:
        keys += SERIES_RETURN if depth == 2 else ()
        # Searching all series (not within one study) returns the study's attributes too.
        if not _single(matches.get("StudyInstanceUID")):
            keys += STUDY_RETURN
    if depth == 3:
        keys += INSTANCE_RETURN
        if not _single(matches.get("SeriesInstanceUID")):
            keys += SERIES_RETURN
            if not _single(matches.get("StudyInstanceUID")):
                keys += STUDY_RETURN
    for key in list(matches) + sorted(include - {"all"}):
        where = keyword_level(key)
        if where == "any" or _KEY_DEPTH.get(where, 3) <= max(depth, 1) or _is_hex(key):
            keys.append(key)
    if depth == 0:  # a patient has no study attributes beyond its own
        keys = [k for k in keys if keyword_level(k) == "patient" or k in PATIENT_RETURN]
    return list(dict.fromkeys(keys))


def _single(value: str | None) -> bool:
    return bool(value) and "\\" not in str(value) and "," not in str(value) and "*" not in str(value)


def _is_hex(key: str) -> bool:
    return len(key) == 8 and all(c in "0123456789ABCDEFabcdef" for c in key)


_STUDY_ROW = (dicom_studies.c.attrs, dicom_studies.c.modalities_in_study, dicom_studies.c.sop_classes_in_study,
              dicom_studies.c.number_of_series, dicom_studies.c.number_of_instances, dicom_studies.c.patient_id,
              dicom_studies.c.study_instance_uid)
_STUDY_ORDER = (dicom_studies.c.updated_at.desc(), dicom_studies.c.study_instance_uid.desc())


class _StudyRow(NamedTuple):
    attrs: str
    modalities_in_study: str | None
    sop_classes_in_study: str | None
    number_of_series: int
    number_of_instances: int
    patient_id: str | None
    study_instance_uid: str


# The study-level searches clients send most (a patient's studies, an accession number), built once:
# each is one range of an index ending with the result order (migration 0006).
_STUDIES_BY = {
    keyword: sa.select(*_STUDY_ROW).where(dicom_studies.c.datastore_id == sa.bindparam("datastore_id"),
                                          column == sa.bindparam("value"))
    .order_by(*_STUDY_ORDER).limit(sa.bindparam("limit")).offset(sa.bindparam("offset"))
    for keyword, column in (("PatientID", dicom_studies.c.patient_id),
                            ("AccessionNumber", dicom_studies.c.accession_number))}


def _exact_study_key(depth: int, by_column: list[tuple[str, Condition, Any, Any]], python_conditions: list[Any],
                     page: tuple[int | None, int]) -> tuple[str, str] | None:
    """(keyword, value) when a study search is one exact PatientID or AccessionNumber, else None."""
    if depth != 1 or python_conditions or len(by_column) != 1 or page[0] is None:
        return None
    keyword, condition, _, _ = by_column[0]
    if keyword not in _STUDIES_BY or condition.kind != "text" or len(condition.terms) != 1:
        return None
    term = condition.terms[0]
    return None if term.wildcard or term.is_range else (keyword, term.value)


def _study_row(r: Any) -> dict[str, Any]:
    return {"study": orjson.loads(r.attrs), "computed": _study_computed(r), "patient_id": r.patient_id,
            "study_uid": r.study_instance_uid}


def _studies(conn: Connection, datastore_id: str, conditions: list[Any],
             page: tuple[int | None, int]) -> Iterator[dict[str, Any]]:
    t = dicom_studies
    q = sa.select(*_STUDY_ROW).where(t.c.datastore_id == datastore_id, *conditions).order_by(*_STUDY_ORDER)
    for r in conn.execute(_paged(q, page)):
        yield _study_row(r)


def _paged(q: Any, page: tuple[int | None, int]) -> Any:
    limit, offset = page
    if limit is not None:
        q = q.limit(limit)
    return q.offset(offset) if offset else q


def _study_computed(r: Any) -> dict[str, Any]:
    return {"ModalitiesInStudy": _split_multi(r.modalities_in_study),
            "SOPClassesInStudy": _split_multi(r.sop_classes_in_study),
            "NumberOfStudyRelatedSeries": str(r.number_of_series),
            "NumberOfStudyRelatedInstances": str(r.number_of_instances), "InstanceAvailability": "ONLINE"}


def _series(conn: Connection, datastore_id: str, conditions: list[Any],
            page: tuple[int | None, int]) -> Iterator[dict[str, Any]]:
    s, t = dicom_series, dicom_studies
    q = (sa.select(s.c.attrs, s.c.number_of_instances, s.c.series_instance_uid, s.c.study_instance_uid,
                   t.c.attrs.label("study_attrs"), t.c.modalities_in_study, t.c.sop_classes_in_study,
                   t.c.number_of_series, t.c.number_of_instances.label("study_instances"))
         .join(t, sa.and_(t.c.datastore_id == s.c.datastore_id, t.c.study_instance_uid == s.c.study_instance_uid))
         .where(s.c.datastore_id == datastore_id, *conditions)
         .order_by(t.c.updated_at.desc(), t.c.study_instance_uid.desc(), s.c.series_number.is_(None),
                   s.c.series_number, s.c.series_instance_uid))
    parsed = _Parsed()
    for r in conn.execute(_paged(q, page)):
        computed = _study_computed(_StudyCounts(r))
        computed["NumberOfSeriesRelatedInstances"] = str(r.number_of_instances)
        series = orjson.loads(r.attrs)
        series.setdefault("SeriesInstanceUID", r.series_instance_uid)
        yield {"study": parsed(r.study_attrs), "series": series, "computed": computed,
               "study_uid": r.study_instance_uid}


class _Parsed:
    """JSON texts parsed once per query: every instance row of a series repeats its series' and
    study's attributes (the dicts are shared between rows, so nothing may change them)."""

    def __init__(self) -> None:
        self._seen: dict[str, Any] = {}

    def __call__(self, text: str) -> Any:
        value = self._seen.get(text)
        if value is None:
            value = self._seen[text] = orjson.loads(text)
        return value


class _StudyCounts:
    def __init__(self, r: Any) -> None:
        self.modalities_in_study = r.modalities_in_study
        self.sop_classes_in_study = r.sop_classes_in_study
        self.number_of_series = r.number_of_series
        self.number_of_instances = r.study_instances


def _instances(conn: Connection, datastore_id: str, conditions: list[Any],
               page: tuple[int | None, int]) -> Iterator[dict[str, Any]]:
    i, s, t = dicom_instances, dicom_series, dicom_studies
    q = (sa.select(i.c.attrs, i.c.vrs, i.c.sop_instance_uid, i.c.series_instance_uid, i.c.study_instance_uid,
                   s.c.attrs.label("series_attrs"), s.c.number_of_instances, t.c.attrs.label("study_attrs"),
                   t.c.modalities_in_study, t.c.sop_classes_in_study, t.c.number_of_series,
                   t.c.number_of_instances.label("study_instances"))
         .join(s, sa.and_(s.c.image_set_id == i.c.image_set_id, s.c.series_instance_uid == i.c.series_instance_uid))
         .join(t, sa.and_(t.c.datastore_id == i.c.datastore_id, t.c.study_instance_uid == i.c.study_instance_uid))
         .where(i.c.datastore_id == datastore_id, *conditions)
         .order_by(t.c.updated_at.desc(), t.c.study_instance_uid.desc(), s.c.series_number.is_(None),
                   s.c.series_number, s.c.series_instance_uid, i.c.instance_number.is_(None),
                   i.c.instance_number, i.c.sop_instance_uid))
    parsed = _Parsed()
    for r in conn.execute(_paged(q, page)):
        computed = _study_computed(_StudyCounts(r))
        computed["NumberOfSeriesRelatedInstances"] = str(r.number_of_instances)
        instance = orjson.loads(r.attrs)
        instance.setdefault("SOPInstanceUID", r.sop_instance_uid)
        yield {"study": parsed(r.study_attrs), "series": parsed(r.series_attrs), "instance": instance,
               "vrs": orjson.loads(r.vrs) if r.vrs else {}, "computed": computed,
               "study_uid": r.study_instance_uid}


def _patients(studies: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Studies grouped by Patient ID (the patient level's unique key), in the studies' order."""
    groups: dict[str, dict[str, Any]] = {}
    for row in studies:
        key = row["patient_id"] or ""
        group = groups.get(key)
        if group is None:
            patient = {k: v for k, v in row["study"].items() if level_of(k) == "patient"}
            groups[key] = {"study": patient, "computed": {"studies": 0, "series": 0, "instances": 0}}
            group = groups[key]
        counts = group["computed"]
        counts["studies"] += 1
        counts["series"] += int(row["computed"]["NumberOfStudyRelatedSeries"])
        counts["instances"] += int(row["computed"]["NumberOfStudyRelatedInstances"])
    for group in groups.values():
        counts = group["computed"]
        group["computed"] = {"NumberOfPatientRelatedStudies": str(counts["studies"]),
                             "NumberOfPatientRelatedSeries": str(counts["series"]),
                             "NumberOfPatientRelatedInstances": str(counts["instances"])}
        yield group


def _result(row: dict[str, Any], depth: int, returned: list[str], include: set[str]) -> dict[str, Any]:
    levels = [row.get("instance") or {}, row.get("series") or {}, row.get("study") or {}, row["computed"]]
    out: dict[str, Any] = {}
    if "all" in include:
        for attrs in reversed(levels):
            out.update(attrs)
        if depth == 0:
            out = {k: v for k, v in out.items() if keyword_level(k) == "patient"}
    for key in returned:
        if key in out:
            continue
        for attrs in levels:
            if key in attrs:
                out[key] = attrs[key]
                break
        else:
            if not _is_hex(key):
                out[key] = None  # a return key the entity has no value for: present, empty
    vrs = row.get("vrs") or {}
    private = {k: vrs[k] for k in out if k in vrs}
    if private:
        out["DICOMVRs"] = private
    return out
