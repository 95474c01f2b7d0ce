"""C-GET and C-MOVE SCP at every level: the matching instances, sent as C-STORE sub-operations.

Each instance goes in its stored transfer syntax when the receiving side accepted that for
the SOP class, else transcoded (`instance_part10(..., transfer_syntax=...)`) to one it did
accept: Explicit VR Little Endian first (pynetdicom re-encodes it as Implicit VR or deflated
when only those were accepted), then any other accepted syntax tessel can produce. pynetdicom
counts completed/failed/warning sub-operations and sends the final response.

C-GET sends on the requesting association (the SCU proposed the storage contexts, with the
SCP role for itself); C-MOVE opens an association to the destination from the AE registry,
proposing what `move_contexts` lists.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import (DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, ExplicitVRLittleEndian,
                         ImplicitVRLittleEndian)
from pynetdicom import build_context, evt
from pynetdicom.association import Association
from pynetdicom.presentation import PresentationContext
from pynetdicom.sop_class import (PatientRootQueryRetrieveInformationModelGet,
                                  PatientRootQueryRetrieveInformationModelMove,
                                  StudyRootQueryRetrieveInformationModelGet,
                                  StudyRootQueryRetrieveInformationModelMove)

from tessel.catalog.query import query
from tessel.codecs.syntaxes import HTJ2K_LOSSLESS, HTJ2K_LOSSLESS_RPCL, J2K_LOSSLESS, LOSSLESS_FORMATS
from tessel.dimse.datasets import LEVELS, part10_dataset, uid_list, unsendable
from tessel.dimse.peers import Peer
from tessel.dimse.status import CANCEL, PENDING, IdentifierMismatch
from tessel.errors import NotFound, TesselError, Unsupported
from tessel.retrieve.part10 import instance_part10, locate
from tessel.stores import Stores

log = logging.getLogger("tessel.dimse")

GET_MODELS = (PatientRootQueryRetrieveInformationModelGet, StudyRootQueryRetrieveInformationModelGet)
MOVE_MODELS = (PatientRootQueryRetrieveInformationModelMove, StudyRootQueryRetrieveInformationModelMove)
PATIENT_ROOT = (PatientRootQueryRetrieveInformationModelGet, PatientRootQueryRetrieveInformationModelMove)
UNCOMPRESSED = (ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian)
# Lossless syntaxes tessel encodes frames to, in the order offered to C-MOVE destinations.
ENCODABLE = (HTJ2K_LOSSLESS_RPCL, HTJ2K_LOSSLESS, J2K_LOSSLESS)
MAX_CONTEXTS = 128
VERIFICATION = "1.2.840.10008.1.1"  # PS3.8: presentation context ids are odd numbers 1..255


@dataclass(frozen=True, slots=True)
class Target:
    """One instance to send."""

    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    stored_transfer_syntax_uid: str | None


def _target(ref: Any) -> Target:
    return Target(ref.study_instance_uid, ref.series_instance_uid, ref.sop_instance_uid,
                  str(ref.sop_class_uid or ""), ref.stored_transfer_syntax_uid)


def _joined(uids: Sequence[str]) -> str:
    return "\\".join(uids)


def targets(stores: Stores, datastore_id: str | None, model_uid: str, request: Dataset, *,
            visible: Callable[[list[str]], set[str]] | None = None) -> list[Target]:
    """The instances a C-GET/C-MOVE identifier names, in study/series/instance order, once each;
    `visible` (image set ids -> those the caller may read) leaves the others out."""
    raw_level = str(request.get("QueryRetrieveLevel") or "").strip().upper()
    if raw_level not in LEVELS or (raw_level == "PATIENT" and model_uid not in PATIENT_ROOT):
        raise IdentifierMismatch(f"Query/Retrieve Level {raw_level or '(none)'!r} is not valid for this "
                                 "information model")
    if datastore_id is None:
        return []
    catalog = stores.catalog
    studies = uid_list(request, "StudyInstanceUID")
    series = uid_list(request, "SeriesInstanceUID")
    sops = uid_list(request, "SOPInstanceUID")
    places: list[tuple[str, str | None, str | None]] = []  # (study, series, sop) for locate
    if raw_level == "PATIENT":
        patient_id = str(request.get("PatientID") or "").strip()
        if not patient_id or "*" in patient_id or "?" in patient_id:
            raise IdentifierMismatch("a PATIENT level retrieve needs one Patient ID (0010,0020)")
        rows = query(catalog, datastore_id, "STUDY", {"PatientID": patient_id}, include={"StudyInstanceUID"})
        places = [(str(r["StudyInstanceUID"]), None, None) for r in rows]
    elif raw_level == "STUDY":
        if not studies:
            raise IdentifierMismatch("a STUDY level retrieve needs Study Instance UID(s) (0020,000D)")
        places = [(s, None, None) for s in studies]
    elif raw_level == "SERIES":
        if not series:
            raise IdentifierMismatch("a SERIES level retrieve needs Series Instance UID(s) (0020,000E)")
        matches = {"SeriesInstanceUID": _joined(series)}
        if studies:
            matches["StudyInstanceUID"] = _joined(studies)
        rows = query(catalog, datastore_id, "SERIES", matches, include={"StudyInstanceUID", "SeriesInstanceUID"})
        places = [(str(r["StudyInstanceUID"]), str(r["SeriesInstanceUID"]), None) for r in rows]
    else:
        if not sops:
            raise IdentifierMismatch("an IMAGE level retrieve needs SOP Instance UID(s) (0008,0018)")
        matches = {"SOPInstanceUID": _joined(sops)}
        if studies:
            matches["StudyInstanceUID"] = _joined(studies)
        if series:
            matches["SeriesInstanceUID"] = _joined(series)
        rows = query(catalog, datastore_id, "IMAGE", matches,
                     include={"StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"})
        places = [(str(r["StudyInstanceUID"]), str(r["SeriesInstanceUID"]), str(r["SOPInstanceUID"]))
                  for r in rows]
    found: dict[str, Target] = {}
    for study, series_uid, sop in dict.fromkeys(places):
        try:
            refs = locate(catalog, datastore_id, study, series_uid, sop)
        except NotFound:
            continue
        if visible is not None:
            shown = visible([r.image_set_id for r in refs])
            refs = [r for r in refs if r.image_set_id in shown]
        for ref in refs:
            found.setdefault(ref.sop_instance_uid, _target(ref))
    return list(found.values())


def _candidates(stored: str | None, accepted: set[str]) -> list[str | None]:
    """Transfer syntaxes to ask instance_part10 for, best first (None = as stored)."""
    out: list[str | None] = []
    if stored is None or stored in accepted:
        out.append(None)
    if accepted & set(UNCOMPRESSED):
        out.append(ExplicitVRLittleEndian)
    if ExplicitVRBigEndian in accepted:
        out.append(ExplicitVRBigEndian)
    out.extend(sorted(accepted - set(UNCOMPRESSED) - {ExplicitVRBigEndian, stored or ""}))
    return list(dict.fromkeys(out))


def _sendable(syntax: str, accepted: set[str]) -> bool:
    return syntax in accepted or (syntax in UNCOMPRESSED and bool(accepted & set(UNCOMPRESSED)))


def dataset_for(stores: Stores, datastore_id: str, target: Target, accepted: set[str]) -> Dataset:
    """The instance as a Dataset in a syntax the receiver accepted (or an unsendable stand-in)."""
    for syntax in _candidates(target.stored_transfer_syntax_uid, accepted):
        try:
            data = instance_part10(stores, datastore_id, target.study_instance_uid, target.series_instance_uid,
                                   target.sop_instance_uid, transfer_syntax=syntax)
        except Unsupported:
            continue
        except TesselError as exc:
            log.warning("cannot send %s: %s", target.sop_instance_uid, exc.message)
            break
        ds = part10_dataset(data)
        if _sendable(str(ds.file_meta.TransferSyntaxUID), accepted):
            return ds
    if not accepted:
        log.warning("cannot send %s: the receiver accepted no context for SOP class %s",
                    target.sop_instance_uid, target.sop_class_uid)
    else:
        log.warning("cannot send %s in any syntax the receiver accepted (%s)", target.sop_instance_uid,
                    ", ".join(sorted(accepted)))
    return unsendable(target.sop_class_uid, target.sop_instance_uid)


def accepted_syntaxes(assoc: Association | None, sop_class_uid: str) -> set[str]:
    """Transfer syntaxes accepted for sending `sop_class_uid` (this side as C-STORE SCU)."""
    if assoc is None:
        return set()
    return {str(cx.transfer_syntax[0]) for cx in assoc.accepted_contexts
            if cx.abstract_syntax == sop_class_uid and cx.as_scu}


def sub_operations(stores: Stores, datastore_id: str, found: list[Target],
                   sending: Callable[[], Association | None],
                   is_cancelled: Callable[[], bool]) -> Iterator[tuple[int, Dataset | None]]:
    """(Pending, dataset) per instance for pynetdicom to send; Cancel when asked to stop."""
    for target in found:
        if is_cancelled():
            yield CANCEL, None
            return
        yield PENDING, dataset_for(stores, datastore_id, target, accepted_syntaxes(sending(), target.sop_class_uid))


def move_contexts(found: list[Target]) -> list[PresentationContext]:
    """Contexts for the C-MOVE sub-association, so the destination can take every instance.

    Per SOP class: uncompressed (every instance can be sent so), then each stored syntax (sent
    as stored, lossy ones included), then the lossless compressed syntaxes tessel can encode
    (for destinations that want compressed data), while there is room for contexts. Verification
    comes first: a destination that accepts none of the rest still associates, and the instances
    it cannot take are reported as failed sub-operations rather than as an unknown destination.
    """
    by_class: dict[str, set[str]] = {}
    for target in found:
        stored = target.stored_transfer_syntax_uid
        syntaxes = by_class.setdefault(target.sop_class_uid, set())
        if stored and stored not in UNCOMPRESSED:
            syntaxes.add(stored)
    contexts = [build_context(VERIFICATION, [ImplicitVRLittleEndian])]
    contexts += [build_context(sop_class, [ExplicitVRLittleEndian, ImplicitVRLittleEndian]) for sop_class in by_class]
    for sop_class, syntaxes in by_class.items():
        contexts.extend(build_context(sop_class, [syntax]) for syntax in sorted(syntaxes))
    for sop_class, syntaxes in by_class.items():
        encodable = [ts for ts in ENCODABLE if ts not in syntaxes]
        if encodable and syntaxes & LOSSLESS_FORMATS:
            contexts.append(build_context(sop_class, encodable))
    return contexts[:MAX_CONTEXTS]


class SubAssociation:
    """Catches the association pynetdicom opens to a C-MOVE destination, to read what it accepted."""

    def __init__(self) -> None:
        self.assoc: Association | None = None

    def handlers(self) -> list[tuple[Any, Callable[[Any], None]]]:
        return [(evt.EVT_ESTABLISHED, self._established)]

    def _established(self, event: Any) -> None:
        self.assoc = event.assoc
        set_nodelay(event.assoc)


def set_nodelay(assoc: Association) -> None:
    """TCP_NODELAY: a C-STORE response must not wait for Nagle's delayed ACK."""
    sock = getattr(assoc.dul.socket, "socket", None) if assoc.dul.socket is not None else None
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass  # not a TCP socket (or already closed): nothing to tune


def destination(peer: Peer | None, found: list[Target],
                sub: SubAssociation) -> tuple[str | None, int | None] | tuple[str, int, dict[str, Any]]:
    """What the C-MOVE handler yields first: (None, None) for an unknown destination."""
    if peer is None:
        return None, None
    return peer.host, peer.port, {"contexts": move_contexts(found), "evt_handlers": sub.handlers()}
