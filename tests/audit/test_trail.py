"""The audit trail: batched writes, one hash chain, and verification that names the first bad record."""

from __future__ import annotations

import subprocess
import sys
import threading
from typing import Any

import sqlalchemy as sa

from tessel.audit import AuditLog, Event, Filters, records, verify
from tessel.catalog.sql.tables import audit_head, audit_records
from tessel.crypto import AUDIT_CHAIN
from tessel.stores import Stores


def chain_key(stores: Stores) -> bytes:
    assert stores.crypto is not None
    return stores.crypto.secret(AUDIT_CHAIN, always=True)


def write(stores: Stores, count: int, **fields: Any) -> AuditLog:
    log = AuditLog(stores.catalog, chain_key(stores))
    for n in range(count):
        log.record(Event("ahi", action="medical-imaging:GetImageFrame", principal=fields.get("principal", "TSLA"),
                         image_set_id=f"{n:032x}", status=200, bytes_out=1000 + n, outcome="allowed"))
    log.stop()  # drains
    return log


def execute(stores: Stores, statement: Any) -> None:
    with stores.catalog.write() as conn:
        conn.execute(statement)


def test_records_are_written_in_order_and_the_chain_verifies(stores: Stores) -> None:
    write(stores, 25)
    rows = list(records(stores.catalog, Filters()))
    assert [r["seq"] for r in rows] == list(range(1, 26))
    assert [r["bytes_out"] for r in rows] == [1000 + n for n in range(25)]
    result = verify(stores.catalog, chain_key(stores))
    assert result.ok and result.checked == 25


def test_a_batch_larger_than_one_insert_keeps_every_record_in_order(stores: Stores) -> None:
    """A drained batch goes in as multi-row INSERTs of ROWS_PER_INSERT rows (on SQLite): the chunks
    join up with nothing lost, doubled or reordered."""
    from tessel.audit.log import ROWS_PER_INSERT

    count = 2 * ROWS_PER_INSERT + 37
    write(stores, count)
    rows = list(records(stores.catalog, Filters()))
    assert [r["seq"] for r in rows] == list(range(1, count + 1))
    assert [r["image_set_id"] for r in rows] == [f"{n:032x}" for n in range(count)]
    result = verify(stores.catalog, chain_key(stores))
    assert result.ok and result.checked == count


def test_an_altered_record_is_named(stores: Stores) -> None:
    write(stores, 10)
    execute(stores, sa.update(audit_records).where(audit_records.c.seq == 7).values(principal="someone-else"))
    result = verify(stores.catalog, chain_key(stores))
    assert not result.ok and result.bad_seq == 7 and "record 7 was altered" in (result.reason or "")
    assert result.checked == 6


def test_a_rehashed_record_still_fails_without_the_chain_key(stores: Stores) -> None:
    import hashlib

    write(stores, 5)
    with stores.catalog.read() as conn:
        row = dict(conn.execute(sa.select(audit_records).where(audit_records.c.seq == 3)).one()._mapping)
    forged = hashlib.sha256(repr(row).encode()).hexdigest()  # an attacker's best guess at a hash
    execute(stores, sa.update(audit_records).where(audit_records.c.seq == 3).values(outcome="denied", hash=forged))
    assert verify(stores.catalog, chain_key(stores)).bad_seq == 3


def test_a_removed_record_is_named(stores: Stores) -> None:
    write(stores, 10)
    execute(stores, sa.delete(audit_records).where(audit_records.c.seq == 4))
    result = verify(stores.catalog, chain_key(stores))
    assert not result.ok and result.bad_seq == 4 and "record 4 removed" in (result.reason or "")


def test_records_removed_from_the_end_are_noticed_by_the_head(stores: Stores) -> None:
    write(stores, 10)
    execute(stores, sa.delete(audit_records).where(audit_records.c.seq > 8))
    result = verify(stores.catalog, chain_key(stores))
    assert not result.ok and result.bad_seq == 9 and "removed from the end" in (result.reason or "")
    execute(stores, sa.update(audit_head).values(seq=8, hash="0" * 64))
    assert not verify(stores.catalog, chain_key(stores)).ok  # a forged head does not match record 8


def test_concurrent_writers_extend_one_chain(stores: Stores) -> None:
    logs = [AuditLog(stores.catalog, chain_key(stores)) for _ in range(3)]
    for log in logs:
        log.start()

    def burst(log: AuditLog, who: str) -> None:
        for n in range(200):
            log.record(Event("dicomweb", action="medical-imaging:GetDICOMInstanceFrames", principal=who, status=200))

    threads = [threading.Thread(target=burst, args=(log, f"P{i}")) for i, log in enumerate(logs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for log in logs:
        log.stop()
    result = verify(stores.catalog, chain_key(stores))
    assert result.ok and result.checked == 600
    assert len(list(records(stores.catalog, Filters(principal="P1")))) == 200


def test_filters_select_by_principal_patient_image_set_time_and_outcome(stores: Stores) -> None:
    log = AuditLog(stores.catalog, chain_key(stores))
    log.record(Event("ahi", action="medical-imaging:GetImageSet", principal="A", patient_id="MRN1", time=100.0,
                     image_set_id="i1", outcome="allowed", status=200))
    log.record(Event("dicomweb", action="medical-imaging:SearchDICOMStudies", principal="B", time=200.0,
                     outcome="denied", status=404))
    log.record(Event("dimse", action="dimse:C-STORE", principal="ae:CT", patient_id="MRN1", time=300.0,
                     outcome="allowed", status=0))
    log.stop()

    def seqs(**kw: Any) -> list[int]:
        return [r["seq"] for r in records(stores.catalog, Filters(**kw))]

    assert seqs(principal="A") == [1]
    assert seqs(patient_id="MRN1") == [1, 3]
    assert seqs(image_set_id="i1") == [1]
    assert seqs(since=150.0, until=300.0) == [2]
    assert seqs(outcome="denied") == [2]
    assert seqs(action="C-STORE") == [3]


def test_the_cli_verifies_exports_and_exits_non_zero_at_the_altered_record(stores: Stores) -> None:
    write(stores, 6, principal="TSLCLI")
    args = [sys.executable, "-m", "tessel.cli.main", "audit"]
    data = ["--data-dir", str(stores.settings.data_dir)]
    ok = subprocess.run([*args, "verify", *data], capture_output=True, text=True)
    assert ok.returncode == 0 and "6 record(s) verified" in ok.stdout
    exported = subprocess.run([*args, "--json", "--principal", "TSLCLI", *data], capture_output=True, text=True)
    assert exported.returncode == 0 and len(exported.stdout.splitlines()) == 6
    execute(stores, sa.update(audit_records).where(audit_records.c.seq == 5).values(bytes_out=1))
    broken = subprocess.run([*args, "verify", *data], capture_output=True, text=True)
    assert broken.returncode == 1 and "BROKEN at record 5" in broken.stderr


def test_key_commands_are_audited_with_the_operating_system_user(stores: Stores, tmp_path: Any) -> None:
    import json

    data = ["--data-dir", str(stores.settings.data_dir)]
    tessel = [sys.executable, "-m", "tessel.cli.main"]
    made = subprocess.run([*tessel, "keys", "create", "robot", *data], capture_output=True, text=True, check=True)
    key_id = dict(line.split("=", 1) for line in made.stdout.splitlines())["AWS_ACCESS_KEY_ID"]
    subprocess.run([*tessel, "keys", "disable", key_id, *data], capture_output=True, check=True)
    subprocess.run([*tessel, "master-key", "rotate", *data], capture_output=True, check=True)
    out = subprocess.run([*tessel, "audit", "--json", "--interface", "cli", *data], capture_output=True, text=True)
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["action"] for r in rows] == ["tessel:keys.create", "tessel:keys.disable", "tessel:master-key.rotate"]
    assert key_id in rows[0]["detail"] and rows[0]["principal"].startswith("os:")
    assert subprocess.run([*tessel, "audit", "verify", *data], capture_output=True).returncode == 0
