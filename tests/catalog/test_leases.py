"""Import-job leases: one runner per job across processes sharing a catalog (SQLite and PostgreSQL)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

from tessel.catalog.models import JobStatus
from tessel.errors import Conflict
from tessel.ingest import jobs
from tessel.lifecycle.datastores import create_datastore
from tessel.stores import Stores


@pytest.fixture
def job_id(stores: Stores) -> str:
    ds = create_datastore(stores, "t")
    return str(jobs.start_import_job(stores, ds.id, "file:///nowhere/", "file:///nowhere-out/").id)


def test_a_live_lease_keeps_other_runners_out_until_released(stores: Stores, job_id: str) -> None:
    catalog = stores.catalog
    assert catalog.claim_job(job_id, "host-a/boot/1", 30)
    assert not catalog.claim_job(job_id, "host-b/boot/2", 30)
    assert catalog.job_runner(job_id) == "host-a/boot/1"
    assert catalog.claim_job(job_id, "host-a/boot/1", 30)  # its holder may claim again
    catalog.release_job(job_id, "host-b/boot/2")  # only the holder can release
    assert catalog.job_runner(job_id) == "host-a/boot/1"
    catalog.release_job(job_id, "host-a/boot/1")
    assert catalog.claim_job(job_id, "host-b/boot/2", 30)


def test_an_expired_lease_is_taken_over_and_its_old_holder_cannot_renew(stores: Stores, job_id: str) -> None:
    catalog = stores.catalog
    assert catalog.claim_job(job_id, "host-a/boot/1", 0.2)
    time.sleep(0.3)
    assert catalog.claim_job(job_id, "host-b/boot/2", 30)
    assert not catalog.renew_job_lease(job_id, "host-a/boot/1", 30)
    assert catalog.renew_job_lease(job_id, "host-b/boot/2", 30)


def test_a_job_held_by_a_dead_process_of_this_host_is_taken_over_at_once(stores: Stores, job_id: str) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    stale = f"{socket.gethostname()}/{jobs._boot_id()}/{dead.stdout.strip()}/0000"
    assert stores.catalog.claim_job(job_id, stale, 3600)
    lease = jobs._JobLease(stores, job_id)  # the holder's pid is gone: no need to wait an hour
    try:
        assert stores.catalog.job_runner(job_id) == lease.runner != stale
    finally:
        lease.release()
    assert stores.catalog.job_runner(job_id) is None


def test_a_job_held_elsewhere_is_a_conflict(stores: Stores, job_id: str) -> None:
    assert stores.catalog.claim_job(job_id, "another-host/boot/1", 3600)
    with pytest.raises(Conflict, match="another process"):
        jobs.run_import_job(stores, job_id)
    job = stores.catalog.job_by_id(job_id)
    assert job is not None and job.status == JobStatus.SUBMITTED  # untouched
