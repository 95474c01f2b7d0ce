"""Who may associate, store, query and retrieve: dicom-access.json and the loopback default."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage, StudyRootQueryRetrieveInformationModelFind, Verification

from tessel.dimse.access import AccessFile, AccessPolicy, Reject
from tessel.errors import InvalidInput
from tests.dimse.archive import image_sets
from tests.dimse.conftest import Dimse, running_dimse
from tests.factory import make_series


def write_policy(dimse: Dimse, callers: dict[str, Any]) -> None:
    dimse.allow(callers)


def local_address() -> str | None:
    """An address of this machine that is not loopback (None if it has none)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: nothing is sent, the kernel just picks a route
            address = str(s.getsockname()[0])
        except OSError:
            return None
    return None if address.startswith("127.") else address


def _echo_from(address: str, port: int, calling: str = "WS01") -> Any:
    ae = AE(ae_title=calling)
    ae.add_requested_context(Verification)
    return ae.associate(address, port, ae_title="TESSEL")


def test_by_default_only_loopback_callers_are_accepted(tmp_path: Path) -> None:
    address = local_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address to call from")
    with running_dimse(tmp_path, host="0.0.0.0") as dimse:
        outside = _echo_from(address, dimse.port)  # the source address is then `address`, not loopback
        assert outside.is_rejected
        assert (outside.acceptor.primitive.result, outside.acceptor.primitive.diagnostic) == (0x01, 0x01)
        inside = _echo_from("127.0.0.1", dimse.port)
        assert inside.is_established
        inside.release()
        dimse.allow({"WS01": {"hosts": [address]}})  # now that address is allowed, for WS01 only
        allowed = _echo_from(address, dimse.port)
        assert allowed.is_established
        allowed.release()
        assert _echo_from(address, dimse.port, calling="OTHER").is_rejected


def test_associations_beyond_the_limit_are_rejected_as_transient(tmp_path: Path) -> None:
    with running_dimse(tmp_path, dicom_max_associations=1) as dimse:
        first = _echo_from("127.0.0.1", dimse.port)
        assert first.is_established
        try:
            second = _echo_from("127.0.0.1", dimse.port)
            assert second.is_rejected
            rejection = second.acceptor.primitive
            assert (rejection.result, rejection.result_source, rejection.diagnostic) == (0x02, 0x03, 0x02)
        finally:
            first.release()
        # the slot is free again once the server has seen the release (it may take a moment)
        deadline = time.monotonic() + 10
        third = _echo_from("127.0.0.1", dimse.port)
        while not third.is_established and time.monotonic() < deadline:
            time.sleep(0.2)
            third = _echo_from("127.0.0.1", dimse.port)
        assert third.is_established
        third.release()


def test_a_silent_association_is_aborted_after_the_timeout(tmp_path: Path) -> None:
    with running_dimse(tmp_path, dicom_timeout=1.0) as dimse:
        assoc = _echo_from("127.0.0.1", dimse.port)
        assert assoc.is_established
        deadline = time.monotonic() + 30
        while assoc.is_established and time.monotonic() < deadline:
            time.sleep(0.1)
        assert assoc.is_aborted


def test_an_unknown_calling_ae_title_is_rejected_at_association(dimse: Dimse) -> None:
    write_policy(dimse, {"MODALITY": {}})
    result = dimse.run("echoscu", aet="STRANGER", check=False)
    assert result.returncode != 0
    assert "Association Rejected" in result.stdout + result.stderr
    assert "Calling AE Title Not Recognized" in result.stdout + result.stderr
    ae = AE(ae_title="STRANGER")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", dimse.port, ae_title="TESSEL")
    assert assoc.is_rejected
    assert (assoc.acceptor.primitive.result, assoc.acceptor.primitive.result_source,
            assoc.acceptor.primitive.diagnostic) == (0x01, 0x01, 0x03)
    assert dimse.run("echoscu", aet="MODALITY").returncode == 0


def test_a_caller_without_store_rights_gets_refused_not_authorised(dimse: Dimse, tmp_path: Path) -> None:
    write_policy(dimse, {"VIEWER": {"store": False}})
    files = make_series(tmp_path / "in", 2, rows=8, columns=8)
    result = dimse.store(*files, aet="VIEWER", check=False)
    assert "Store Response (Unknown Status: 0x124)" in result.stdout + result.stderr  # Refused: Not Authorized
    assert image_sets(dimse.stores, dimse.datastore_id) == []


def test_a_caller_without_query_rights_is_not_offered_c_find(dimse: Dimse) -> None:
    write_policy(dimse, {"STORER": {"query": False, "retrieve": False}})
    ae = AE(ae_title="STORER")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    ae.add_requested_context(CTImageStorage)
    assoc = ae.associate("127.0.0.1", dimse.port, ae_title="TESSEL")
    try:
        accepted = {cx.abstract_syntax for cx in assoc.accepted_contexts}
    finally:
        assoc.release()
    assert accepted == {CTImageStorage}


def test_the_datastore_of_a_caller_comes_from_its_entry(dimse: Dimse, tmp_path: Path) -> None:
    from tessel.lifecycle.datastores import create_datastore

    other = create_datastore(dimse.stores, "research")
    write_policy(dimse, {"RESEARCH": {"datastore": "research"}, "*": {}})
    dimse.store(*make_series(tmp_path / "in", 2, rows=8, columns=8), aet="RESEARCH")
    assert len(image_sets(dimse.stores, other.id)) == 1
    assert image_sets(dimse.stores, dimse.datastore_id) == []


def test_several_datastores_and_none_chosen_is_a_clear_failure(dimse: Dimse, tmp_path: Path) -> None:
    from tessel.lifecycle.datastores import create_datastore

    create_datastore(dimse.stores, "second")
    ds = dcmread(make_series(tmp_path / "in", 1, rows=8, columns=8)[0])
    ae = AE(ae_title="PYSCU")
    ae.add_requested_context(CTImageStorage)
    assoc = ae.associate("127.0.0.1", dimse.port, ae_title="TESSEL")
    try:
        status = assoc.send_c_store(ds)
    finally:
        assoc.release()
    assert status.Status == 0xC0F2
    assert "--dicom-datastore" in str(status.ErrorComment)


def test_the_default_policy_allows_loopback_only() -> None:
    policy = AccessPolicy(None)
    assert policy.decide("ANY", "127.0.0.1").grant is not None
    assert policy.decide("ANY", "::1").grant is not None
    assert policy.decide("ANY", "::ffff:127.0.0.5").grant is not None
    assert policy.decide("ANY", "10.1.2.3").reject is Reject.HOST


def test_entries_restrict_hosts_and_rights() -> None:
    policy = AccessPolicy.parse(json.dumps({"callers": {
        "CT01": {"hosts": ["10.1.2.0/24"], "retrieve": False},
        "*": {"hosts": ["127.0.0.1"], "store": False}}}))
    ct = policy.decide("CT01", "10.1.2.9").grant
    assert ct is not None and ct.store and ct.query and not ct.retrieve
    assert policy.decide("CT01", "10.9.9.9").reject is Reject.HOST
    other = policy.decide("WS", "127.0.0.1").grant
    assert other is not None and not other.store
    assert policy.decide("WS", "10.1.2.9").reject is Reject.HOST


@pytest.mark.parametrize("text", ['{"callers": {"A": {"hosts": ["not-an-ip"]}}}', '{"callers": []}',
                                  '{"callers": {"A": {"store": "yes"}}}', "{not json",
                                  '{"callers": {"A": {"stroe": true}}}'])
def test_a_malformed_policy_says_what_is_wrong(text: str) -> None:
    with pytest.raises(InvalidInput):
        AccessPolicy.parse(text)


def test_a_broken_edit_keeps_the_last_good_policy(tmp_path: Path) -> None:
    access = AccessFile(tmp_path)
    assert access.policy().is_default
    access.path.write_text(json.dumps({"callers": {"ONLY": {}}}))
    assert access.policy().decide("OTHER", "127.0.0.1").reject is Reject.CALLING_AE
    access.path.write_text("{ broken")
    os.utime(access.path, (access.path.stat().st_atime, access.path.stat().st_mtime + 1))
    assert access.policy().decide("OTHER", "127.0.0.1").reject is Reject.CALLING_AE
    assert access.error is not None
