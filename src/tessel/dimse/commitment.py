"""Storage Commitment Push Model SCP (PS3.4 J): N-ACTION in, N-EVENT-REPORT out.

The N-ACTION is answered at once; a worker thread then commits what the C-STORE queue still
holds, checks every referenced SOP instance against the catalog (stored, in a live image
set, with the referenced SOP class), and reports the committed and failed references with
an N-EVENT-REPORT: on the requesting association while it is open, else on a new
association to the requester's address from the AE registry (as the commitment SCP, with
SCP/SCU role selection).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from pynetdicom import build_context
from pynetdicom.ae import ApplicationEntity
from pynetdicom.association import Association
from pynetdicom.pdu_primitives import SCP_SCU_RoleSelectionNegotiation
from pynetdicom.sop_class import StorageCommitmentPushModel

from tessel.catalog.query import query
from tessel.dimse.datasets import CommitmentRequest, commitment_result
from tessel.dimse.peers import get_peer
from tessel.dimse.retrieve import set_nodelay
from tessel.dimse.status import CLASS_INSTANCE_CONFLICT, NO_SUCH_OBJECT_INSTANCE, PROCESSING_FAILURE
from tessel.stores import Stores

log = logging.getLogger("tessel.dimse")

WELL_KNOWN_INSTANCE = "1.2.840.10008.1.20.1.1"  # Storage Commitment Push Model SOP Instance
_CHUNK = 500


def check(stores: Stores, datastore_id: str | None, references: Sequence[tuple[str, str]]
          ) -> tuple[list[tuple[str, str]], list[tuple[str, str, int]]]:
    """(committed, failed with Failure Reason) for (SOP Class UID, SOP Instance UID) references."""
    stored: dict[str, str] = {}
    if datastore_id is not None:
        uids = list(dict.fromkeys(inst for _cls, inst in references))
        for start in range(0, len(uids), _CHUNK):
            rows = query(stores.catalog, datastore_id, "IMAGE",
                         {"SOPInstanceUID": "\\".join(uids[start:start + _CHUNK])},
                         include={"SOPInstanceUID", "SOPClassUID"})
            stored.update({str(r["SOPInstanceUID"]): str(r.get("SOPClassUID") or "") for r in rows})
    committed: list[tuple[str, str]] = []
    failed: list[tuple[str, str, int]] = []
    for cls, inst in references:
        if inst not in stored:
            failed.append((cls, inst, NO_SUCH_OBJECT_INSTANCE))
        elif cls and stored[inst] and cls != stored[inst]:
            failed.append((cls, inst, CLASS_INSTANCE_CONFLICT))
        else:
            committed.append((cls or stored[inst], inst))
    return committed, failed


class CommitmentJob:
    """One N-ACTION's report, sent from its own thread once the N-ACTION response has gone."""

    def __init__(self, stores: Stores, ae: ApplicationEntity, assoc: Association, calling_ae_title: str,
                 datastore_id: str | None, request: CommitmentRequest, *,
                 flush: Callable[[str | None], bool]) -> None:
        self.stores, self.ae, self.assoc = stores, ae, assoc
        self.calling_ae_title = calling_ae_title
        self.datastore_id, self.request, self.flush = datastore_id, request, flush
        self.responded = threading.Event()  # set when the N-ACTION-RSP has been sent
        self.done = threading.Event()
        self.delivered = False

    def start(self) -> None:
        threading.Thread(target=self._run, name="tessel-dimse-commitment", daemon=True).start()

    def _run(self) -> None:
        try:
            self._report()
        except Exception:  # a report that cannot be built or sent is logged; the SCU may ask again
            log.exception("storage commitment report for transaction %s failed", self.request.transaction_uid)
        finally:
            self.done.set()

    def _report(self) -> None:
        try:
            if not self.flush(self.datastore_id):
                log.warning("storage commitment: queued instances were not committed in time")
            committed, failed = check(self.stores, self.datastore_id, self.request.references)
        except Exception:
            log.exception("storage commitment check failed")
            committed, failed = [], [(c, i, PROCESSING_FAILURE) for c, i in self.request.references]
        info = commitment_result(self.request.transaction_uid, self.ae.ae_title, committed, failed)
        event_type = 2 if failed else 1
        self.responded.wait(timeout=30)
        if self.assoc.is_established:
            rsp, _ = self.assoc.send_n_event_report(info, event_type, StorageCommitmentPushModel,
                                                    WELL_KNOWN_INSTANCE)
            if int(rsp.get("Status", 0xFFFF)) == 0x0000:
                self.delivered = True
                return
        peer = get_peer(self.stores.catalog, self.calling_ae_title)
        if peer is None:
            log.warning("storage commitment: %s released before the report and is not in the AE registry "
                        "(tessel ae add %s HOST PORT); report for %s not delivered", self.calling_ae_title,
                        self.calling_ae_title, self.request.transaction_uid)
            return
        role = SCP_SCU_RoleSelectionNegotiation()
        role.sop_class_uid = StorageCommitmentPushModel
        role.scu_role = False
        role.scp_role = True  # this side is the commitment SCP on an association it requests
        assoc = self.ae.associate(peer.host, peer.port, ae_title=peer.name,
                                  contexts=[build_context(StorageCommitmentPushModel)], ext_neg=[role])
        if not assoc.is_established:
            log.warning("storage commitment: cannot associate with %s at %s:%d", peer.name, peer.host, peer.port)
            return
        try:
            set_nodelay(assoc)
            rsp, _ = assoc.send_n_event_report(info, event_type, StorageCommitmentPushModel, WELL_KNOWN_INSTANCE)
            self.delivered = int(rsp.get("Status", 0xFFFF)) == 0x0000
        finally:
            assoc.release()
