"""Storage Commitment Push Model: N-ACTION in, N-EVENT-REPORT out (on the association, or a new one)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE, build_role, evt
from pynetdicom.sop_class import CTImageStorage, MRImageStorage, StorageCommitmentPushModel

from tessel.cli.main import main
from tests.dimse.conftest import Dimse, free_port
from tests.factory import make_series

WELL_KNOWN = "1.2.840.10008.1.20.1.1"


class Reports:
    """N-EVENT-REPORTs received by a test SCU (on its own association or as an SCP)."""

    def __init__(self) -> None:
        self.received: list[tuple[int, Dataset]] = []
        self.arrived = threading.Event()

    def handler(self, event: Any) -> tuple[int, None]:
        self.received.append((int(event.event_type), event.event_information))
        self.arrived.set()
        return 0x0000, None

    def one(self, timeout: float = 60) -> tuple[int, Dataset]:
        assert self.arrived.wait(timeout), "no N-EVENT-REPORT arrived"
        (report,) = self.received
        return report


def request(transaction_uid: str, references: list[tuple[str, str]]) -> Dataset:
    ds = Dataset()
    ds.TransactionUID = transaction_uid
    items = []
    for sop_class, sop_instance in references:
        item = Dataset()
        item.ReferencedSOPClassUID = sop_class
        item.ReferencedSOPInstanceUID = sop_instance
        items.append(item)
    ds.ReferencedSOPSequence = items
    return ds


def _modality(reports: Reports) -> AE:
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(CTImageStorage)
    ae.add_requested_context(StorageCommitmentPushModel)
    return ae


@pytest.fixture
def sent(dimse: Dimse, tmp_path: Path) -> Iterator[list[tuple[str, str]]]:
    """(SOP Class UID, SOP Instance UID) of three CT instances C-STOREd just now (perhaps not committed yet)."""
    files = make_series(tmp_path / "in", 3, rows=16, columns=16)
    dimse.run("storescu", files=tuple(files))
    yield [(CTImageStorage, str(dcmread(p).SOPInstanceUID)) for p in files]


def test_the_report_comes_on_the_requesting_association(dimse: Dimse, sent: list[tuple[str, str]]) -> None:
    reports = Reports()
    assoc = _modality(reports).associate("127.0.0.1", dimse.port, ae_title="TESSEL",
                                         evt_handlers=[(evt.EVT_N_EVENT_REPORT, reports.handler)])
    assert assoc.is_established
    transaction = generate_uid()
    try:
        status, _ = assoc.send_n_action(request(transaction, sent), 1, StorageCommitmentPushModel, WELL_KNOWN)
        assert status.Status == 0x0000
        event_type, info = reports.one()
    finally:
        assoc.release()
    assert event_type == 1  # every reference committed
    assert info.TransactionUID == transaction and info.RetrieveAETitle == "TESSEL"
    assert sorted((i.ReferencedSOPClassUID, i.ReferencedSOPInstanceUID) for i in info.ReferencedSOPSequence) == \
        sorted(sent)
    assert "FailedSOPSequence" not in info


def test_unknown_and_mismatched_references_are_reported_failed(dimse: Dimse,
                                                               sent: list[tuple[str, str]]) -> None:
    reports = Reports()
    unknown = (CTImageStorage, generate_uid())
    wrong_class = (MRImageStorage, sent[0][1])
    assoc = _modality(reports).associate("127.0.0.1", dimse.port, ae_title="TESSEL",
                                         evt_handlers=[(evt.EVT_N_EVENT_REPORT, reports.handler)])
    try:
        status, _ = assoc.send_n_action(request(generate_uid(), [*sent[1:], unknown, wrong_class]), 1,
                                        StorageCommitmentPushModel, WELL_KNOWN)
        assert status.Status == 0x0000
        event_type, info = reports.one()
    finally:
        assoc.release()
    assert event_type == 2  # some failed
    assert sorted(i.ReferencedSOPInstanceUID for i in info.ReferencedSOPSequence) == sorted(s for _, s in sent[1:])
    failed = {i.ReferencedSOPInstanceUID: (i.ReferencedSOPClassUID, i.FailureReason) for i in info.FailedSOPSequence}
    assert failed == {unknown[1]: (CTImageStorage, 0x0112),  # no such object instance
                      wrong_class[1]: (MRImageStorage, 0x0119)}  # class/instance conflict


def test_after_release_the_report_goes_to_the_registered_address(dimse: Dimse,
                                                                 sent: list[tuple[str, str]]) -> None:
    # The modality asks, releases at once, and listens as the commitment SCU (SCP role) on its port.
    reports = Reports()
    listener = AE(ae_title="MODALITY")
    listener.add_supported_context(StorageCommitmentPushModel, scu_role=True, scp_role=True)
    port = free_port()
    server = listener.start_server(("127.0.0.1", port), block=False,
                                   evt_handlers=[(evt.EVT_N_EVENT_REPORT, reports.handler)])
    data_dir = str(dimse.stores.settings.data_dir)
    try:
        assert main(["ae", "add", "--data-dir", data_dir, "MODALITY", "127.0.0.1", str(port)]) == 0
        requester = AE(ae_title="MODALITY")
        requester.add_requested_context(StorageCommitmentPushModel)
        assoc = requester.associate("127.0.0.1", dimse.port, ae_title="TESSEL",
                                    ext_neg=[build_role(StorageCommitmentPushModel, scu_role=True)])
        transaction = generate_uid()
        status, _ = assoc.send_n_action(request(transaction, sent), 1, StorageCommitmentPushModel, WELL_KNOWN)
        assoc.release()
        assert status.Status == 0x0000
        event_type, info = reports.one()
    finally:
        server.shutdown()
    assert event_type == 1 and info.TransactionUID == transaction
    assert len(info.ReferencedSOPSequence) == len(sent)


def test_a_request_without_references_is_refused(dimse: Dimse) -> None:
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(StorageCommitmentPushModel)
    assoc = ae.associate("127.0.0.1", dimse.port, ae_title="TESSEL")
    empty = Dataset()
    empty.TransactionUID = generate_uid()
    try:
        status, _ = assoc.send_n_action(empty, 1, StorageCommitmentPushModel, WELL_KNOWN)
    finally:
        assoc.release()
    assert status.Status == 0x0115  # invalid argument value
    assert "Referenced SOP Sequence" in str(status.ErrorComment)
