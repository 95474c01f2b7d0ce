"""`tessel ae`: the AE registry (add/list/remove) and who may call (allow/revoke/access)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tessel.cli.main import main
from tessel.config import Settings
from tessel.dimse.access import AccessFile, Reject
from tessel.lifecycle.datastores import create_datastore
from tessel.stores import open_stores


def tessel(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_peers_are_added_listed_readdressed_and_removed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = str(tmp_path / "data")
    assert tessel(capsys, "ae", "add", "--data-dir", data, "WS01", "10.1.2.3", "104")[1] == "added WS01 at 10.1.2.3:104\n"
    assert tessel(capsys, "ae", "add", "--data-dir", data, "WS01", "10.1.2.4", "11112")[1] == \
        "updated WS01 at 10.1.2.4:11112\n"
    tessel(capsys, "ae", "add", "--data-dir", data, "ARCHIVE", "pacs.example.org", "104")
    code, out, _ = tessel(capsys, "ae", "list", "--data-dir", data, "--json")
    assert code == 0 and json.loads(out) == [{"name": "ARCHIVE", "host": "pacs.example.org", "port": 104},
                                             {"name": "WS01", "host": "10.1.2.4", "port": 11112}]
    assert tessel(capsys, "ae", "remove", "--data-dir", data, "WS01")[0] == 0
    assert [p["name"] for p in json.loads(tessel(capsys, "ae", "list", "--data-dir", data, "--json")[1])] == ["ARCHIVE"]


@pytest.mark.parametrize(("args", "message"), [
    (("add", "A-TITLE-LONGER-THAN-16", "h", "104"), "longer than 16 characters"),
    (("add", "WS01", "h", "70000"), "port 70000 is not between 1 and 65535"),
    (("remove", "NOBODY"), "no DICOM peer is registered as 'NOBODY'"),
    (("revoke", "NOBODY"), "has no entry for 'NOBODY'"),
    (("allow", "WS01", "--host", "not-an-address"), "does not appear to be an IPv4 or IPv6 network"),
    (("allow", "WS01", "--datastore", "nowhere"), "no datastore has the id or name 'nowhere'"),
])
def test_mistakes_are_refused_with_a_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            args: tuple[str, ...], message: str) -> None:
    command, *rest = args
    code, _out, err = tessel(capsys, "ae", command, "--data-dir", str(tmp_path / "data"), *rest)
    assert code == 2 and message in err


def test_allow_and_revoke_edit_the_policy_the_server_reads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    stores = open_stores(Settings(data_dir=data))
    research = create_datastore(stores, "research")
    stores.close()
    access = AccessFile(data)
    code, out, _ = tessel(capsys, "ae", "allow", "--data-dir", str(data), "CT01", "--host", "10.1.2.0/24",
                          "--no-retrieve")
    assert code == 0 and "CT01 may store, query from 10.1.2.0/24" in out
    assert "other AE titles keep the default" in out  # the first entry does not lock out loopback callers
    ct = access.policy().decide("CT01", "10.1.2.7").grant
    assert ct is not None and ct.store and ct.query and not ct.retrieve
    assert access.policy().decide("CT01", "10.9.9.9").reject is Reject.HOST
    assert access.policy().decide("ANYONE", "127.0.0.1").grant is not None

    tessel(capsys, "ae", "allow", "--data-dir", str(data), "RESEARCH", "--no-store", "--datastore", "research")
    grant = access.policy().decide("RESEARCH", "192.0.2.5").grant  # no --host: any address
    assert grant is not None and not grant.store and grant.datastore == "research"
    assert research.name == "research"

    tessel(capsys, "ae", "revoke", "--data-dir", str(data), "*")
    assert access.policy().decide("ANYONE", "127.0.0.1").reject is Reject.CALLING_AE

    code, out, _ = tessel(capsys, "ae", "access", "--data-dir", str(data), "--json")
    shown = json.loads(out)
    assert code == 0 and shown["exists"] is True
    assert shown["callers"] == [
        {"ae_title": "CT01", "hosts": ["10.1.2.0/24"], "store": True, "query": True, "retrieve": False,
         "datastore": None},
        {"ae_title": "RESEARCH", "hosts": "any", "store": False, "query": True, "retrieve": True,
         "datastore": "research"}]
    code, out, _ = tessel(capsys, "ae", "access", "--data-dir", str(data))
    assert out.splitlines()[1].split() == ["AE", "TITLE", "STORE", "QUERY", "RETRIEVE", "DATASTORE", "HOSTS"]
    assert out.splitlines()[2].split() == ["CT01", "yes", "yes", "no", "(default)", "10.1.2.0/24"]


def test_access_shows_the_default_and_reports_a_broken_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    code, out, _ = tessel(capsys, "ae", "access", "--data-dir", str(data))
    assert code == 0 and "(absent: the default policy applies)" in out
    assert out.splitlines()[2].split() == ["*", "yes", "yes", "yes", "(default)", "127.0.0.1,", "::1"]
    data.mkdir(parents=True, exist_ok=True)
    (data / "dicom-access.json").write_text('{"callers": {"CT01": {"stroe": false}}}')
    code, _out, err = tessel(capsys, "ae", "access", "--data-dir", str(data))
    assert code == 2 and "unknown field(s) stroe" in err
