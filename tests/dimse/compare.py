"""Comparing what C-STORE made of some files with what an import job made of the same files."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.uid import (DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, ExplicitVRLittleEndian,
                         ImplicitVRLittleEndian, JPEGLosslessSV1, JPEGLSLossless, RLELossless)

from tessel.lifecycle.datastores import create_datastore

from tests.dimse.archive import frames_by_instance, import_folder, instances
from tests.dimse.conftest import Dimse, running_dimse


@dataclass
class Compared:
    dimse: Dimse
    reference: str  # the datastore the import job filled
    datastores: dict[str, str]  # calling AE title -> the datastore it stored into
    sent: dict[str, set[str]]  # calling AE title -> the SOP Instance UIDs it sent
    edited: dict[str, set[str]] = field(default_factory=dict)  # AE title -> keywords its files' converter changed
    references: dict[str, str] = field(default_factory=dict)  # AE title -> its own import (default: reference)


def assert_same_as_imported(compared: Compared, aet: str, transfer_syntax: str | None) -> None:
    stores = compared.dimse.stores
    reference_id = compared.references.get(aet, compared.reference)
    over_dimse, imported = instances(stores, compared.datastores[aet]), instances(stores, reference_id)
    assert set(over_dimse) == compared.sent[aet], (aet, set(over_dimse) ^ compared.sent[aet])
    for sop, got in over_dimse.items():
        want = imported[sop]
        if transfer_syntax is not None:  # the File Meta says what came over the network
            received = got["instance"]["DICOM"].pop("TransferSyntaxUID")
            assert received == transfer_syntax, (aet, sop, received)
            want["instance"]["DICOM"].pop("TransferSyntaxUID")
        for keyword in compared.edited.get(aet, set()):  # what the converter changed in the files
            got["instance"]["DICOM"].pop(keyword, None)
            want["instance"]["DICOM"].pop(keyword, None)
        differences = _differences(got, want)
        assert not differences, (aet, sop, differences)
    reference = frames_by_instance(stores, reference_id)
    frames = frames_by_instance(stores, compared.datastores[aet])
    assert frames == {sop: reference[sop] for sop in over_dimse}, (aet, frames)


def _differences(got: dict[str, Any], want: dict[str, Any], where: str = "") -> dict[str, Any]:
    """{path: (got, want)} for every leaf where two instance records differ."""
    out: dict[str, Any] = {}
    for key in set(got) | set(want):
        a, b = got.get(key), want.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out.update(_differences(a, b, f"{where}{key}."))
        elif a != b:
            out[f"{where}{key}"] = (a, b)
    return out


def convert(files: list[Path], folder: Path, command: tuple[str, ...]) -> set[str]:
    """Copies of `files` in another transfer syntax, made with dcmtk; the keywords it changed."""
    folder.mkdir(parents=True)
    edited: set[str] = set()
    for path in files:
        subprocess.run([*command, str(path), str(folder / path.name)], check=True, capture_output=True)
        before, after = dcmread(path, stop_before_pixels=True), dcmread(folder / path.name, stop_before_pixels=True)
        edited |= {e.keyword for e in after if e.tag not in before or before[e.tag].value != e.value}
    return edited


# calling AE title -> (dcmtk converter and options, the syntax the files then have, storescu's proposal)
VARIANTS = {"XE": (("dcmconv", "+te"), ExplicitVRLittleEndian, "-xe"),
            "XI": (("dcmconv", "+ti"), ImplicitVRLittleEndian, "-xi"),
            "XB": (("dcmconv", "+tb"), ExplicitVRBigEndian, "-xb"),
            "XD": (("dcmconv", "+td"), DeflatedExplicitVRLittleEndian, "-xd"),
            "RLE": (("dcmcrle",), RLELossless, "-xr"),
            "JPLL": (("dcmcjpeg", "+e1"), JPEGLosslessSV1, "-xs"),
            "JLSL": (("dcmcjpls", "+el"), JPEGLSLossless, "-xt")}


@contextlib.contextmanager
def stored_in_variants(tmp: Path, files: list[Path]) -> Iterator[Compared]:
    """`files` converted to each of VARIANTS, each variant storescu'd by its own AE title into its
    own datastore, and the original files imported by an import job."""
    edited = {aet: convert(files, tmp / aet, command) for aet, (command, _syntax, _proposal) in VARIANTS.items()}
    with running_dimse(tmp) as dimse:
        datastores = {aet: create_datastore(dimse.stores, aet.lower()).id for aet in VARIANTS}
        dimse.allow({aet: {"datastore": aet.lower()} for aet in VARIANTS})
        for aet, (_command, _syntax, proposal) in VARIANTS.items():  # -R: only what the files need
            dimse.store(*sorted((tmp / aet).glob("*.dcm")), args=(proposal, "-R"), aet=aet)
        reference = create_datastore(dimse.stores, "imported")
        originals = tmp / "originals"
        originals.mkdir()
        for path in files:
            shutil.copy(path, originals / path.name)
        assert import_folder(dimse.stores, reference.id, originals).imported == len(files)
        # Implicit VR carries no VRs: private elements become UN, in a file as over the network. So
        # that variant is compared with an import of its own files.
        implicit = create_datastore(dimse.stores, "imported-xi")
        assert import_folder(dimse.stores, implicit.id, tmp / "XI").imported == len(files)
        sent = {aet: {str(dcmread(p).SOPInstanceUID) for p in (tmp / aet).glob("*.dcm")} for aet in VARIANTS}
        yield Compared(dimse, reference.id, datastores, sent, edited, {"XI": implicit.id})
