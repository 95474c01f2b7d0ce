"""The security matrix: principals x representative operations on AHI, DICOMweb and DIMSE.

Each denial is checked to leak nothing: a resource the principal may not see answers exactly
as a resource that does not exist (same status, code and words), searches return nothing of
it, and a tag-scoped principal sees only tagged image sets.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import time
from typing import Any, Callable

import botocore.auth
import httpx
import pytest
from botocore.exceptions import ClientError
from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import (CTImageStorage, StudyRootQueryRetrieveInformationModelFind,
                                  StudyRootQueryRetrieveInformationModelGet)

from tessel.auth.tokens import TokenSigner
from tessel.catalog import Catalog
from tests.security.conftest import (ACCOUNT, ADMIN_ID, PATIENT_NAME, SERIES, STUDY_A1, STUDY_A2, STUDY_B,
                                     World)

FAKE_DS = "0123456789abcdef0123456789abcdef"
FAKE_IS = "fedcba9876543210fedcba9876543210"
VALID = ("admin", "reader", "one_datastore", "tagged")

# -- helpers --------------------------------------------------------------------------------------

@pytest.fixture(scope="module", autouse=True)
def audit_window(world: World) -> int:
    """The audit sequence number before the matrix's first request (set-up requests flushed first)."""
    time.sleep(0.8)  # the server writes its audit queue every 0.25 s
    world.calls.clear()
    rows = [json.loads(line) for line in world.tessel("audit", "--json", "--newest-first", "--limit", "1")
            .stdout.splitlines()]
    return int(rows[0]["seq"]) if rows else 0



def ahi_call(call: Callable[[], Any]) -> tuple[str, Any]:
    """("ok", result) or (error code, message)."""
    try:
        return "ok", call()
    except ClientError as exc:
        return exc.response["Error"]["Code"], exc.response["Error"]["Message"]


def assert_absent_like(denied: tuple[str, Any], missing: tuple[str, Any], real_id: str, fake_id: str) -> None:
    """The denial reads exactly like the answer for an id that does not exist."""
    assert denied[0] == missing[0] == "ResourceNotFoundException", (denied, missing)
    assert denied[1] == missing[1].replace(fake_id, real_id)


def image_set_ids(result: dict[str, Any]) -> set[str]:
    return {s["imageSetId"] for s in result["imageSetsMetadataSummaries"]}


def auth_for(world: World, who: str) -> dict[str, Any]:
    key = world.keys[who]
    return {"auth": (key.key_id, key.secret)}


# -- AHI ------------------------------------------------------------------------------------------

def test_ahi_listing_and_searching_show_only_what_each_principal_may_see(world: World) -> None:
    sets = world.image_sets
    all_a = {sets["a1_tagged"], sets["a1_untagged"], sets["a2_tagged"]}
    expected_a = {"admin": all_a, "reader": all_a, "one_datastore": all_a,
                  "tagged": {sets["a1_tagged"], sets["a2_tagged"]}}
    for who in VALID:
        hi = world.ahi(world.keys[who])
        listed = {d["datastoreId"] for d in hi.list_datastores()["datastoreSummaries"]}
        assert ({world.a, world.b} & listed) == ({world.a} if who == "one_datastore" else {world.a, world.b}), who
        assert image_set_ids(hi.search_image_sets(datastoreId=world.a)) == expected_a[who], who
        # Pages stay full when a tag condition leaves image sets out.
        page = hi.search_image_sets(datastoreId=world.a, maxResults=1)
        assert len(page["imageSetsMetadataSummaries"]) == 1 and "nextToken" in page, who
        second = hi.search_image_sets(datastoreId=world.a, maxResults=5, nextToken=page["nextToken"])
        assert image_set_ids(page) | image_set_ids(second) == expected_a[who], who
    assert image_set_ids(world.ahi(world.keys["tagged"]).search_image_sets(datastoreId=world.b)) == set()
    one = world.ahi(world.keys["one_datastore"])
    assert_absent_like(ahi_call(lambda: one.search_image_sets(datastoreId=world.b)),
                       ahi_call(lambda: one.search_image_sets(datastoreId=FAKE_DS)), world.b, FAKE_DS)


def test_ahi_direct_ids_outside_the_scope_answer_as_if_absent(world: World) -> None:
    one = world.ahi(world.keys["one_datastore"])
    assert_absent_like(ahi_call(lambda: one.get_datastore(datastoreId=world.b)),
                       ahi_call(lambda: one.get_datastore(datastoreId=FAKE_DS)), world.b, FAKE_DS)
    b_set = world.image_sets["b"]
    assert_absent_like(ahi_call(lambda: one.get_image_set(datastoreId=world.b, imageSetId=b_set)),
                       ahi_call(lambda: one.get_image_set(datastoreId=world.b, imageSetId=FAKE_IS)), b_set, FAKE_IS)
    assert_absent_like(ahi_call(lambda: one.get_image_frame(datastoreId=world.b, imageSetId=b_set,
                                                            imageFrameInformation={"imageFrameId": world.frames["b"]})),
                       ahi_call(lambda: one.get_image_frame(datastoreId=world.b, imageSetId=FAKE_IS,
                                                            imageFrameInformation={"imageFrameId": world.frames["b"]})),
                       b_set, FAKE_IS)
    tagged = world.ahi(world.keys["tagged"])
    hidden = world.image_sets["a1_untagged"]
    assert_absent_like(ahi_call(lambda: tagged.get_image_set_metadata(datastoreId=world.a, imageSetId=hidden)),
                       ahi_call(lambda: tagged.get_image_set_metadata(datastoreId=world.a, imageSetId=FAKE_IS)),
                       hidden, FAKE_IS)
    assert_absent_like(ahi_call(lambda: tagged.get_image_set(datastoreId=world.a, imageSetId=hidden)),
                       ahi_call(lambda: tagged.get_image_set(datastoreId=world.a, imageSetId=FAKE_IS)),
                       hidden, FAKE_IS)


def test_ahi_reads_in_scope_succeed_for_every_principal_allowed_them(world: World) -> None:
    label = "a1_tagged"
    for who in VALID:
        hi = world.ahi(world.keys[who])
        frame = hi.get_image_frame(datastoreId=world.a, imageSetId=world.image_sets[label],
                                   imageFrameInformation={"imageFrameId": world.frames[label]})
        assert len(frame["imageFrameBlob"].read()) > 0, who
        doc = json.loads(gzip.decompress(hi.get_image_set_metadata(
            datastoreId=world.a, imageSetId=world.image_sets[label])["imageSetMetadataBlob"].read()))
        assert doc["Patient"]["DICOM"]["PatientName"] == PATIENT_NAME, who


def test_ahi_a_read_only_key_reads_but_cannot_write(world: World) -> None:
    reader = world.ahi(world.keys["reader"])
    arn = f"{ACCOUNT}:datastore/{world.a}"
    code, message = ahi_call(lambda: reader.tag_resource(resourceArn=arn, tags={"touched": "1"}))
    assert code == "AccessDeniedException" and "medical-imaging:TagResource" in message
    code, _ = ahi_call(lambda: reader.create_datastore(datastoreName="nope"))
    assert code == "AccessDeniedException"
    code, _ = ahi_call(lambda: reader.delete_image_set(datastoreId=world.a, imageSetId=world.image_sets["a1_untagged"]))
    assert code == "AccessDeniedException"
    assert world.ahi().list_tags_for_resource(resourceArn=arn)["tags"] == {}  # nothing changed
    # The datastore-scoped key writes in its datastore, the tag-scoped one only on tagged resources.
    one = world.ahi(world.keys["one_datastore"])
    one.tag_resource(resourceArn=arn, tags={"touched": "1"})
    one.untag_resource(resourceArn=arn, tagKeys=["touched"])
    code, _ = ahi_call(lambda: world.ahi(world.keys["tagged"]).tag_resource(resourceArn=arn, tags={"x": "1"}))
    assert code == "AccessDeniedException"  # it can see into A (tagged image sets), not tag A itself


def test_ahi_bad_credentials_are_refused(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    for client in (world.ahi(world.keys["disabled"]), world.ahi(world.keys["reader"], secret="wrong-secret-0000")):
        code, message = ahi_call(client.list_datastores)
        assert code == "AccessDeniedException", message
        assert world.b not in str(message)
    past = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) - dt.timedelta(minutes=20)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: past)
    code, message = ahi_call(world.ahi(world.keys["admin"]).list_datastores)
    assert code == "AccessDeniedException" and "expired" in message


# -- DICOMweb -------------------------------------------------------------------------------------

def qido_studies(http: httpx.Client, datastore_id: str, *, headers: dict[str, str] | None = None,
                 **auth: Any) -> httpx.Response:
    return http.get(f"/datastore/{datastore_id}/studies",
                    headers={"Accept": "application/dicom+json", **(headers or {})}, **auth)


def study_uids(response: httpx.Response) -> set[str]:
    assert response.status_code == 200, response.text
    return {s["0020000D"]["Value"][0] for s in response.json()}


def test_dicomweb_searches_show_only_what_each_principal_may_see(world: World) -> None:
    expected = {"admin": {STUDY_A1, STUDY_A2}, "reader": {STUDY_A1, STUDY_A2},
                "one_datastore": {STUDY_A1, STUDY_A2}, "tagged": {STUDY_A2}}  # A1 is only partly tagged
    with world.http() as http:
        for who, studies in expected.items():
            assert study_uids(qido_studies(http, world.a, **auth_for(world, who))) == studies, who
        assert study_uids(qido_studies(http, world.b, **auth_for(world, "tagged"))) == set()
        denied = qido_studies(http, world.b, **auth_for(world, "one_datastore"))
        missing = qido_studies(http, FAKE_DS, **auth_for(world, "one_datastore"))
        assert denied.status_code == missing.status_code == 404
        assert denied.json()["message"] == missing.json()["message"].replace(FAKE_DS, world.b)
        # Series within a partly tagged study: the tagged series only.
        r = http.get(f"/datastore/{world.a}/studies/{STUDY_A1}/series", headers={"Accept": "application/dicom+json"},
                     **auth_for(world, "tagged"))
        assert r.status_code == 200 and r.json() == []  # the study is not wholly visible: not listed at all


def test_dicomweb_retrieval_outside_the_scope_answers_as_if_absent(world: World) -> None:
    hidden = f"/datastore/{world.a}/studies/{STUDY_A1}/series/{SERIES['a1_untagged']}/metadata"
    fake = f"/datastore/{world.a}/studies/{STUDY_A1}/series/1.2.3.4.5.6.7/metadata"
    with world.http() as http:
        denied = http.get(hidden, **auth_for(world, "tagged"))
        missing = http.get(fake, **auth_for(world, "tagged"))
        assert denied.status_code == missing.status_code == 404
        assert denied.json()["message"] == missing.json()["message"].replace("1.2.3.4.5.6.7", SERIES["a1_untagged"])
        assert PATIENT_NAME.split("^")[0] not in denied.text
        frames = (f"/datastore/{world.a}/studies/{STUDY_A1}/series/{SERIES['a1_tagged']}/instances/"
                  f"{world.instances['a1_tagged']}/frames/1")
        for who in VALID:
            r = http.get(frames, headers={"Accept": "multipart/related; type=application/octet-stream"},
                         **auth_for(world, who))
            assert r.status_code == 200 and len(r.content) > 64 * 64, who
        # Study-level retrieval gives the tagged series only.
        r = http.get(f"/datastore/{world.a}/studies/{STUDY_A1}/metadata", **auth_for(world, "tagged"))
        assert r.status_code == 200
        assert {i["0020000E"]["Value"][0] for i in r.json()} == {SERIES["a1_tagged"]}
        other = f"/datastore/{world.b}/studies/{STUDY_B}/series/{SERIES['b']}/metadata"
        r = http.get(other, **auth_for(world, "one_datastore"))
        assert r.status_code == 404 and r.json()["message"] == f"datastore {world.b} does not exist"


def test_dicomweb_a_read_only_key_cannot_store(world: World) -> None:
    body = world.files["a1_tagged"].read_bytes()
    with world.http() as http:
        r = http.post(f"/datastore/{world.a}/studies", content=body, headers={"Content-Type": "application/dicom"},
                      **auth_for(world, "reader"))
        assert r.status_code == 403 and "StoreDICOM" in r.json()["message"]


def test_dicomweb_bad_credentials_and_expired_tokens_are_refused(world: World) -> None:
    reader = world.keys["reader"]
    token = world.tessel("token", "create", "--key", reader.key_id, "--ttl", "5m").stdout.strip()
    catalog = Catalog.open(f"sqlite:///{world.data_dir / 'catalog.sqlite'}")  # the signing key is kept there
    try:
        signer = TokenSigner(catalog, world.data_dir)
        expired = signer.create(reader.key_id, 60, now=time.time() - 3600)
        disabled_token = signer.create(world.keys["disabled"].key_id, 600)
    finally:
        catalog.close()
    with world.http() as http:
        assert study_uids(qido_studies(http, world.a, headers={"Authorization": f"Bearer {token}"})) == \
            {STUDY_A1, STUDY_A2}
        refusals = [
            qido_studies(http, world.a, auth=(reader.key_id, "wrong-secret")),
            qido_studies(http, world.a, auth=(world.keys["disabled"].key_id, world.keys["disabled"].secret)),
            qido_studies(http, world.a, headers={"Authorization": f"Bearer {expired}"}),
            qido_studies(http, world.a, headers={"Authorization": f"Bearer {disabled_token}"}),
            qido_studies(http, world.a),
        ]
    for r in refusals:
        assert r.status_code == 401, r.text
        assert STUDY_A1 not in r.text and "Quixote" not in r.text
    assert "expired" in refusals[2].json()["message"]


# -- DIMSE ----------------------------------------------------------------------------------------

def dimse_principal(world: World, aet: str) -> str:
    mapped = {"READER": "reader", "ONEDS_A": "one_datastore", "ONEDS_B": "one_datastore"}
    return world.keys[mapped[aet]].key_id if aet in mapped else f"ae:{aet}"


def associate(world: World, aet: str, *contexts: str, **kwargs: Any) -> Any:
    ae = AE(ae_title=aet)
    for context in contexts:
        ae.add_requested_context(context)
    assoc = ae.associate("127.0.0.1", world.dicom_port, ae_title="TESSEL", **kwargs)
    world.calls.append(("dimse", dimse_principal(world, aet), "dimse:A-ASSOCIATE",
                        0 if assoc.is_established else 0x0124))
    return assoc


def c_find_studies(world: World, aet: str) -> set[str]:
    assoc = associate(world, aet, StudyRootQueryRetrieveInformationModelFind)
    assert assoc.is_established, aet
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = ""
    found = set()
    try:
        for status, identifier in assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind):
            assert status is not None and status.Status in (0x0000, 0xFF00), (aet, status)
            if status.Status == 0xFF00:
                found.add(str(identifier.StudyInstanceUID))
    finally:
        assoc.release()
    world.calls.append(("dimse", dimse_principal(world, aet), "dimse:C-FIND", 0))
    return found


def c_get_count(world: World, aet: str, study: str) -> int:
    from pynetdicom import build_role, evt

    received: list[str] = []

    def on_store(event: Any) -> int:
        received.append(str(event.dataset.SOPInstanceUID))
        return 0x0000

    assoc = associate(world, aet, StudyRootQueryRetrieveInformationModelGet, CTImageStorage,
                      ext_neg=[build_role(CTImageStorage, scp_role=True)], evt_handlers=[(evt.EVT_C_STORE, on_store)])
    assert assoc.is_established
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = study
    final = 0
    try:
        for status, _ in assoc.send_c_get(query, StudyRootQueryRetrieveInformationModelGet):
            assert status is not None
            final = int(status.Status) if status.Status != 0xFF00 else final
    finally:
        assoc.release()
    world.calls.append(("dimse", dimse_principal(world, aet), "dimse:C-GET", final))
    return len(received)


def c_store_status(world: World, aet: str) -> int:
    assoc = associate(world, aet, CTImageStorage)
    assert assoc.is_established
    try:
        status = assoc.send_c_store(dcmread(world.files["a1_tagged"]))
    finally:
        assoc.release()
    world.calls.append(("dimse", dimse_principal(world, aet), "dimse:C-STORE", int(status.Status)))
    return int(status.Status)


def test_dimse_queries_and_retrieves_follow_the_mapped_principal(world: World) -> None:
    assert c_find_studies(world, "ADMIN") == {STUDY_A1, STUDY_A2}
    assert c_find_studies(world, "READER") == {STUDY_A1, STUDY_A2}
    assert c_find_studies(world, "ONEDS_A") == {STUDY_A1, STUDY_A2}
    assert c_find_studies(world, "ONEDS_B") == set()  # B exists and holds a study: the key sees none of it
    assert c_find_studies(world, "TAGGED") == {STUDY_A2}
    assert c_get_count(world, "READER", STUDY_A1) == 2
    assert c_get_count(world, "TAGGED", STUDY_A1) == 1  # the tagged series only
    assert c_get_count(world, "ONEDS_B", STUDY_B) == 0


def test_dimse_a_read_only_caller_cannot_store_and_a_disabled_key_cannot_associate(world: World) -> None:
    assert c_store_status(world, "READER") == 0x0124  # Refused: Not Authorized
    assert c_store_status(world, "ADMIN") == 0x0000
    assoc = associate(world, "GONE", StudyRootQueryRetrieveInformationModelFind)
    assert assoc.is_rejected


def test_principals_on_every_interface_are_the_keys_cli_made(world: World) -> None:
    listed = [json.loads(line) for line in world.tessel("keys", "list", "--json").stdout.splitlines()]
    by_name = {k["name"]: k for k in listed}
    assert by_name["reader"]["policy"]["Statement"][0]["Effect"] == "Allow"
    assert by_name["disabled"]["status"] == "Disabled"
    assert by_name["administrator"]["accessKeyId"] == ADMIN_ID and by_name["administrator"]["policy"] is None
    assert all("secret" not in json.dumps(k).lower() for k in listed)
    # Secrets are stored encrypted: no secret appears anywhere in the catalog's files.
    stored = b"".join(p.read_bytes() for p in world.data_dir.glob("catalog.sqlite*"))
    for key in world.keys.values():
        assert key.secret.encode() not in stored, key.name



# -- the audit trail of everything above (runs last in this module) ---------------------------------------

def test_the_audit_trail_records_every_call_of_the_matrix_and_detects_tampering(
        world: World, audit_window: int, tmp_path: Any) -> None:
    import collections
    import shutil
    import sqlite3

    assert len(world.calls) > 40
    time.sleep(0.8)
    recorded = [json.loads(line) for line in world.tessel("audit", "--json").stdout.splitlines()]
    recorded = [r for r in recorded if r["seq"] > audit_window]

    def key(interface: str, principal: str, action: str | None, status: int) -> tuple[Any, ...]:
        return (interface, principal, action if interface != "dicomweb" else None, status)

    made = collections.Counter(key(*c) for c in world.calls)
    seen = collections.Counter(key(r["interface"], r["principal"], r["action"], r["status"]) for r in recorded
                               if r["interface"] != "dimse" or r["action"] != "dimse:C-ECHO")
    assert seen == made, (made - seen, seen - made)
    for r in recorded:
        assert r["source"] == "127.0.0.1"
        if r["status"] in (401, 403) or r["status"] == 0x0124:
            assert r["outcome"] == "denied", r
    # Denials answered "not found" are recorded as what they were: denied.
    hidden = [r for r in recorded if r["status"] == 404 and r["outcome"] == "denied"]
    assert {r["interface"] for r in hidden} == {"ahi", "dicomweb"}
    assert {r["principal"] for r in hidden} <= {world.keys["one_datastore"].key_id, world.keys["tagged"].key_id}
    frames = [r for r in recorded if r["action"] == "medical-imaging:GetImageFrame" and r["outcome"] == "allowed"]
    assert frames and all(r["bytes_out"] > 0 and r["image_set_id"] for r in frames)
    assert all(r.get("patient_id") == "MRN-9001" for r in frames)  # resolved from the image set
    assert all("Quixote" not in json.dumps(r) for r in recorded)  # no PHI values but the patient's ID

    # Tampering: on a copy of the catalog (the live server keeps appending), alter one record.
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(world.data_dir / "master.key", copy / "master.key")
    with sqlite3.connect(world.data_dir / "catalog.sqlite") as source, \
            sqlite3.connect(copy / "catalog.sqlite") as target:
        source.backup(target)
    victim = recorded[len(recorded) // 2]["seq"]
    verify = [sys_executable(), "-m", "tessel.cli.main", "audit", "verify", "--data-dir", str(copy)]
    assert subprocess_run(verify).returncode == 0
    with sqlite3.connect(copy / "catalog.sqlite") as db:
        db.execute("UPDATE audit_records SET outcome = 'allowed', status = 200 WHERE seq = ?", (victim,))
    broken = subprocess_run(verify)
    assert broken.returncode == 1 and f"BROKEN at record {victim}:" in broken.stderr


def sys_executable() -> str:
    import sys

    return sys.executable


def subprocess_run(args: list[str]) -> Any:
    import subprocess

    from tests.security.conftest import server_env

    return subprocess.run(args, capture_output=True, text=True, env=server_env())
