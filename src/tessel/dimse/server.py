"""The DIMSE server: one pynetdicom AE (AE title TESSEL) on the DICOM port.

Services: Verification, Storage (every storage SOP class, known or not, every transfer syntax
tessel reads), Patient/Study Root Query/Retrieve FIND, GET and MOVE, and Storage Commitment
Push Model. Each association is checked against the access policy when it is requested;
every handler's work runs inside `status.guard`, so errors become DIMSE statuses.

    server = DimseServer(stores, settings)
    server.start()          # binds settings.host:settings.dicom_port, serves in threads
    server.stop()
"""

from __future__ import annotations

import logging
import socket
import socketserver
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import (DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, ExplicitVRLittleEndian,
                         ImplicitVRLittleEndian)
from pynetdicom import AE, _config, evt
from pynetdicom.association import Association
from pynetdicom.dimse_messages import N_ACTION_RSP
from pynetdicom.sop_class import StorageCommitmentPushModel, Verification
from pynetdicom.transport import ThreadedAssociationServer

from tessel.audit import AuditLog, Event, Interface, Outcome
from tessel.auth import Access, KeyStatus, KeyStore, Principal, Resource
from tessel.auth.access import ImageSetScope, visible_studies
from tessel.codecs.syntaxes import LOSSLESS_FORMATS
from tessel.config import Settings
from tessel.dicom.syntaxes import SYNTAXES as READABLE_SYNTAXES
from tessel.dimse import commitment, find, retrieve
from tessel.dimse.access import AccessFile, Action, Grant, Reject
from tessel.dimse.datasets import commitment_request, part10
from tessel.dimse.peers import get_peer
from tessel.dimse.status import (CANCEL, NOT_AUTHORIZED, PENDING, SOP_CLASS_MISMATCH_WARNING, SUCCESS,
                                 IdentifierMismatch,
                                 MoveDestinationUnknown, Service, failure, guard, guarded, status,
                                 store_warning)
from tessel.ingest.received import StoreQueue, staging_options
from tessel.ingest.spool import FOLDER as SPOOL_FOLDER
from tessel.ingest.spool import Segment, Spool
from tessel.ingest.staging import StagingOptions
from tessel.errors import Conflict, InvalidInput, NotFound, Unavailable
from tessel.lifecycle.datastores import find_or_create
from tessel.retrieve.part10 import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from tessel.stores import Stores

log = logging.getLogger("tessel.dimse")

QUERY_SYNTAXES = [ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian,
                  ExplicitVRBigEndian]
_UNCOMPRESSED = {ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian,
                 ExplicitVRBigEndian}
COMMITMENT_FLUSH_SECONDS = 120.0
# What senders may put in one PDU: large PDUs cost pynetdicom fewer passes per instance.
MAX_PDU_SIZE = 1 << 20
MAX_ASSOCIATIONS_PER_HOST = 16  # at once, from one address: one busy or looping peer cannot take them all
READ_FLUSH_SECONDS = 30.0


def _configure_pynetdicom() -> None:
    # Process-wide pynetdicom switches. Unrestricted storage: accept any storage SOP class, even
    # ones pynetdicom does not know (private, newer than its dictionary). The standard logging
    # handlers format every PDU, and identifiers are decoded just to log them: both cost time.
    _config.UNRESTRICTED_STORAGE_SERVICE = True
    _config.LOG_HANDLER_LEVEL = "none"
    _config.LOG_REQUEST_IDENTIFIERS = False
    _config.LOG_RESPONSE_IDENTIFIERS = False


class _Server(ThreadedAssociationServer):
    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        client, address = super().get_request()
        try:  # TCP_NODELAY: each C-STORE response is one small write the SCU waits for
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        return client, address


@dataclass(slots=True)
class Session:
    """What tessel knows about one accepted association."""

    grant: Grant
    address: str
    principal: Principal
    datastore_id: str | None = None
    datastore_resolved: bool = False
    options: StagingOptions | None = None  # how instances stored into datastore_id are staged
    segment: Segment | None = None  # this association's spool segment, opened by its first C-STORE
    commitments: list[commitment.CommitmentJob] = field(default_factory=list)


class DimseServer:
    def __init__(self, stores: Stores, settings: Settings | None = None, *, queue: StoreQueue | None = None,
                 keys: KeyStore | None = None, authz: Access | None = None, audit: AuditLog | None = None) -> None:
        self.stores = stores
        self.settings = settings or stores.settings
        self.queue = queue or StoreQueue(stores, Spool(self.settings.data_dir / SPOOL_FOLDER),
                                         workers=self.settings.resolved_workers)
        self.access = AccessFile(self.settings.data_dir)
        # Callers mapped to an access key or policy are authorized like any other request.
        assert keys is not None or stores.crypto is not None
        self.keys = keys or KeyStore(stores.catalog, stores.crypto)  # type: ignore[arg-type]
        self.authz = authz or Access(stores.catalog, self.settings)
        self.audit = audit  # every association and DIMSE request is recorded there (when given)
        self.ae: AE | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._sessions: weakref.WeakKeyDictionary[Association, Session] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def ae_title(self) -> str:
        return self.settings.ae_title

    @property
    def port(self) -> int:
        if self._server is None:
            return self.settings.dicom_port
        return int(self._server.server_address[1])

    def bind(self) -> None:
        """Listen on the DICOM port (connections wait until `start`); Unavailable if it is taken."""
        if self._server is not None:
            return
        _configure_pynetdicom()
        limit, timeout = self.settings.dicom_max_associations, self.settings.dicom_timeout
        if limit < 1 or not timeout > 0:
            raise InvalidInput(f"TESSEL_DICOM_MAX_ASSOCIATIONS ({limit}) and TESSEL_DICOM_TIMEOUT ({timeout}) "
                               "must be positive")
        ae = AE(ae_title=self.ae_title)
        ae.maximum_associations = limit
        ae.maximum_pdu_size = MAX_PDU_SIZE
        ae.network_timeout = timeout  # an association silent this long is aborted
        ae.dimse_timeout = timeout  # a peer's answer (C-MOVE/C-GET sub-operations) waited for this long
        ae.acse_timeout = min(timeout, 30.0)  # association negotiation and release
        ae.add_supported_context(Verification, QUERY_SYNTAXES)
        for model in (*find.FIND_MODELS, *retrieve.GET_MODELS, *retrieve.MOVE_MODELS):
            ae.add_supported_context(model, QUERY_SYNTAXES)
        ae.add_supported_context(StorageCommitmentPushModel, QUERY_SYNTAXES)
        handlers = [
            (evt.EVT_REQUESTED, self._on_requested),
            (evt.EVT_RELEASED, self._on_ended),
            (evt.EVT_ABORTED, self._on_ended),
            (evt.EVT_CONN_CLOSE, self._on_ended),
            (evt.EVT_DIMSE_SENT, self._on_dimse_sent),
            (evt.EVT_C_ECHO, self._on_echo),
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_C_FIND, self._on_find),
            (evt.EVT_C_GET, self._on_get),
            (evt.EVT_C_MOVE, self._on_move),
            (evt.EVT_N_ACTION, self._on_action),
        ]
        host, port = self.settings.host, self.settings.dicom_port
        try:
            server = ae.make_server((host, port), evt_handlers=handlers, server_class=_Server)
        except OSError as exc:
            raise Unavailable(f"cannot listen on {host}:{port} (DICOM): {exc.strerror or exc}") from None
        self.ae, self._server = ae, server

    def start(self) -> None:
        self.bind()
        assert self._server is not None
        self.queue.start()
        self._thread = threading.Thread(target=self._server.serve_forever, name="tessel-dimse", daemon=True)
        self._thread.start()
        log.info("DIMSE: AE %s listening on %s:%d", self.ae_title, self.settings.host, self.port)

    def stop(self) -> None:
        """Stop accepting, abort open associations, commit what is queued."""
        server, self._server = self._server, None
        if server is not None:
            if self._thread is not None:
                socketserver.BaseServer.shutdown(server)  # ends serve_forever (pynetdicom's also
                # edits the AE's private server list, which make_server never added us to)
            for assoc in list(self.ae.active_associations if self.ae else ()):
                assoc.abort()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
            self.queue.stop()
        self.ae = None

    def flush(self, timeout: float = 60.0) -> bool:
        """Commit every queued C-STORE instance now (tests, shutdown)."""
        return self.queue.flush(None, timeout)

    # -- sessions and datastores --------------------------------------------------------------

    def _session(self, assoc: Association) -> Session | None:
        with self._lock:
            return self._sessions.get(assoc)

    def _datastore(self, session: Session, *, create: bool) -> str | None:
        """The datastore this association stores into and reads (resolved once per association)."""
        if session.datastore_resolved and (session.datastore_id is not None or not create):
            return session.datastore_id
        named = session.grant.datastore or self.settings.dicom_datastore
        catalog = self.stores.catalog
        if named:
            ds = catalog.get_datastore(named) or catalog.find_datastore(name=named)
            if ds is None or ds.status.value == "DELETED":
                raise NotFound(f"datastore {named} (the DIMSE datastore) does not exist")
            found: str | None = ds.id
        else:
            active = catalog.list_datastores(status="ACTIVE", limit=2)
            if len(active) > 1:
                raise Conflict("several datastores: start tessel with --dicom-datastore ID")
            if active:
                found = active[0].id
            elif create:  # a fresh install: the first C-STORE makes the default datastore
                found = find_or_create(self.stores, "default").id
            else:
                found = None
        session.datastore_id, session.datastore_resolved = found, True
        return found

    @property
    def associations(self) -> int:
        """Associations open now (accepted, not yet released or aborted)."""
        with self._lock:
            return len(self._sessions)

    def _allowed(self, session: Session | None, action: Action) -> bool:
        return session is not None and session.grant.allows(action)

    def _principal(self, grant: Grant) -> Principal | None:
        """Who a caller acts as: its mapped access key (None if that key is not Active), its
        inline policy, or else an AE principal limited only by the access file's switches."""
        name = f"AE {grant.calling_ae_title}"
        if grant.access_key is not None:
            key = self.keys.get(grant.access_key)
            if key is None or key.status != KeyStatus.ACTIVE:
                return None
            return Principal(key.access_key_id, f"{key.name} (AE {grant.calling_ae_title})", key.policy, "dimse")
        return Principal(f"ae:{grant.calling_ae_title}", name, grant.policy, "dimse")

    def _scope(self, session: Session, action: str, datastore_id: str | None,
               event: Event | None = None) -> ImageSetScope | None:
        """The image sets this association may read for `action`; None: nothing (answered as
        no match, so a refused datastore looks like an empty one)."""
        if datastore_id is None:
            return None
        try:
            return self.authz.authorize_within(session.principal, action, Resource(datastore_id),
                                               source=session.address, event=event)
        except NotFound:
            return None

    # -- the audit trail ----------------------------------------------------------------------

    def _event(self, session: Session | None, service: str, **ids: Any) -> Event:
        event = Event(Interface.DIMSE.value, action=f"dimse:{service}", source=session.address if session else None,
                      datastore_id=session.datastore_id if session else None, **ids)
        if session is not None:
            event.set_principal(session.principal)
        return event

    def _record(self, event: Event, status: int, started: float) -> None:
        if self.audit is None:
            return
        event.status = status
        event.duration_ms = (time.monotonic() - started) * 1000
        if status == NOT_AUTHORIZED:
            event.outcome = Outcome.DENIED.value
        elif status in (SUCCESS, PENDING, CANCEL) or status & 0xF000 == 0xB000:
            event.outcome = event.outcome or Outcome.ALLOWED.value
        elif event.outcome != Outcome.DENIED.value:
            event.outcome = (Outcome.INVALID if status & 0xFF00 == 0xA900 or status == 0xC000 else Outcome.ERROR).value
        self.audit.record(event)

    @staticmethod
    def _refused(session: Session | None, action: Action) -> Dataset:
        who = session.grant.calling_ae_title if session else "this association"
        return status(NOT_AUTHORIZED, f"{who} may not {action.value} here (dicom-access.json)")

    # -- association events -------------------------------------------------------------------

    def _on_requested(self, event: Any) -> None:
        assoc: Association = event.assoc
        rq = assoc.requestor.primitive
        calling = str(rq.calling_ae_title or "").strip()
        host = str(assoc.requestor.address)
        started = time.monotonic()
        event = Event(Interface.DIMSE.value, action="dimse:A-ASSOCIATE", principal=f"ae:{calling}"[:128],
                      principal_name="(not authenticated)", auth="dimse", source=host)
        try:
            if self.audit is not None and not self.audit.accepting:  # fail closed, as the HTTP edge does
                log.error("DIMSE: rejected %s from %s: the audit trail cannot be written", calling, host)
                assoc.acse.send_reject(0x02, 0x03, 0x01)  # transient, service provider: temporary congestion
                assoc.kill()
                event.detail = "association rejected: the audit trail cannot be written"
                self._record(event, 0xA700, started)
                return
            with self._lock:
                from_host = sum(1 for session in self._sessions.values() if session.address == host)
            if from_host >= MAX_ASSOCIATIONS_PER_HOST:
                log.warning("DIMSE: rejected %s from %s: %d associations from that address already",
                            calling, host, from_host)
                assoc.acse.send_reject(0x02, 0x03, 0x02)  # transient, service provider: local limit exceeded
                assoc.kill()
                event.detail = f"association rejected: {from_host} associations from {host} already"
                event.outcome = Outcome.DENIED.value
                self._record(event, 0xA700, started)
                return
            decision = self.access.policy().decide(calling, host)
            if decision.grant is None:
                assert decision.reject is not None
                log.info("DIMSE: rejected %s from %s: %s", calling, host, decision.reject.value)
                _reject(assoc, 0x01, decision.reject.diagnostic)
                event.detail = f"association rejected: {decision.reject.value}"
                self._record(event, NOT_AUTHORIZED, started)
                return
            principal = self._principal(decision.grant)
            if principal is None:
                log.info("DIMSE: rejected %s from %s: its access key is unknown or disabled", calling, host)
                _reject(assoc, 0x01, Reject.CALLING_AE.diagnostic)
                event.detail = "association rejected: the mapped access key is unknown or disabled"
                self._record(event, NOT_AUTHORIZED, started)
                return
            with self._lock:
                self._sessions[assoc] = Session(decision.grant, host, principal)
            event.set_principal(principal)
            self._record(event, SUCCESS, started)
            _withhold_services(assoc, decision.grant)
            _prefer_syntaxes(assoc)
        except Exception:  # fail closed: an association we could not vet is not accepted
            log.exception("DIMSE: vetting the association from %s at %s failed", calling, host)
            _reject(assoc, 0x02, 0x01)

    def _on_ended(self, event: Any) -> None:
        with self._lock:
            session = self._sessions.pop(event.assoc, None)
        if session is not None and session.segment is not None:
            self.queue.end_segment(session.segment)

    def _on_dimse_sent(self, event: Any) -> None:
        if isinstance(event.message, N_ACTION_RSP):
            session = self._session(event.assoc)
            for job in session.commitments if session else ():
                job.responded.set()

    # -- services -----------------------------------------------------------------------------

    def _on_echo(self, event: Any) -> int:
        self._record(self._event(self._session(event.assoc), "C-ECHO"), SUCCESS, time.monotonic())
        return SUCCESS

    def _on_store(self, event: Any) -> Dataset | int:
        session = self._session(event.assoc)
        started = time.monotonic()
        record = self._event(session, "C-STORE", sop_uid=str(event.request.AffectedSOPInstanceUID)[:64])
        if not self._allowed(session, Action.STORE):
            self._record(record, NOT_AUTHORIZED, started)
            return self._refused(session, Action.STORE)
        assert session is not None

        def work() -> Dataset | int:
            datastore_id = self._datastore(session, create=True)
            assert datastore_id is not None
            self.authz.authorize(session.principal, "StoreDICOM", Resource(datastore_id), source=session.address,
                                 event=record)
            if session.options is None or session.options.datastore_id != datastore_id:
                session.options = staging_options(self.stores, datastore_id)
            if session.segment is None or session.segment.full or session.segment.closed:
                if session.segment is not None:
                    self.queue.end_segment(session.segment)
                session.segment = self.queue.open_segment()
            request = event.request
            record.bytes_in = len(request.DataSet.getvalue())
            data = part10(request.DataSet.getvalue(), str(request.AffectedSOPClassUID),
                          str(request.AffectedSOPInstanceUID), str(event.context.transfer_syntax),
                          session.grant.calling_ae_title, IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME)
            stored = self.queue.store(session.segment, datastore_id, session.options, data,
                                      expect_sop_instance_uid=str(request.AffectedSOPInstanceUID))
            record.study_uid, record.series_uid = stored.study_instance_uid, stored.series_instance_uid
            warning = store_warning(stored.warnings)
            if warning is not None:
                return warning
            if stored.sop_class_uid and stored.sop_class_uid != str(request.AffectedSOPClassUID):
                return status(SOP_CLASS_MISMATCH_WARNING, f"data set SOP Class UID is {stored.sop_class_uid}")
            return SUCCESS

        answer = guard(Service.STORE, work)
        self._record(record, answer if isinstance(answer, int) else int(answer.Status), started)
        return answer

    def _reading(self, session: Session) -> str | None:
        """The datastore to read, with this datastore's queued C-STOREs committed first."""
        datastore_id = self._datastore(session, create=False)
        if datastore_id is not None and self.queue.pending(datastore_id):
            self.queue.flush(datastore_id, READ_FLUSH_SECONDS)
        return datastore_id

    def _on_find(self, event: Any) -> Iterator[tuple[Any, Any]]:
        session = self._session(event.assoc)
        started = time.monotonic()
        record = self._event(session, "C-FIND")
        if not self._allowed(session, Action.QUERY):
            self._record(record, NOT_AUTHORIZED, started)
            yield self._refused(session, Action.QUERY), None
            return
        assert session is not None

        def results() -> Iterator[tuple[Any, Any]]:
            datastore_id = self._reading(session)
            identifier = event.identifier
            level = str(identifier.get("QueryRetrieveLevel") or "").strip().upper()
            action = {"SERIES": "SearchDICOMSeries", "IMAGE": "SearchDICOMInstances"}.get(level, "SearchDICOMStudies")
            scope = self._scope(session, action, datastore_id, record)
            visible = visible_studies(scope, self.stores.catalog, datastore_id) if scope and datastore_id else None
            yield from find.find(self.stores, datastore_id if scope is not None else None,
                                 str(event.request.AffectedSOPClassUID), identifier, self.ae_title,
                                 lambda: bool(event.is_cancelled), visible_studies=visible)

        matches, last = 0, SUCCESS
        for answer in guarded(Service.FIND, results()):
            code = answer[0] if isinstance(answer[0], int) else int(getattr(answer[0], "Status", SUCCESS))
            matches += code == PENDING
            last = code if code != PENDING else last
            yield answer
        record.detail = f"{matches} match(es)"  # the query's keys are not recorded: they may be PHI
        self._record(record, last, started)

    def _targets(self, event: Any, session: Session,
                 record: Event | None = None) -> tuple[str | None, list[retrieve.Target]]:
        datastore_id = self._reading(session)
        scope = self._scope(session, "GetDICOMInstance", datastore_id, record)
        found = retrieve.targets(self.stores, datastore_id if scope is not None else None,
                                 str(event.request.AffectedSOPClassUID), event.identifier,
                                 visible=None if scope is None or scope.everything else scope.visible)
        return datastore_id, found

    def _on_get(self, event: Any) -> Iterator[Any]:
        session = self._session(event.assoc)
        started = time.monotonic()
        record = self._event(session, "C-GET")
        try:
            if not self._allowed(session, Action.RETRIEVE):
                raise _Refusal(self._refused(session, Action.RETRIEVE))
            assert session is not None
            datastore_id, found = self._targets(event, session, record)
        except Exception as exc:  # before the count: report it as the one (failed) sub-operation
            answer = exc.answer if isinstance(exc, _Refusal) else failure(exc, Service.RETRIEVE)
            self._record(record, int(answer.Status), started)
            yield 1
            yield answer, None
            return
        _name_targets(record, found)
        if not found:  # pynetdicom reads no further than a count of 0
            self._record(record, SUCCESS, started)
        yield len(found)
        yield from self._sub_operations(record, started, datastore_id, found, lambda: event.assoc, event)

    def _on_move(self, event: Any) -> Iterator[Any]:
        session = self._session(event.assoc)
        sub = retrieve.SubAssociation()
        started = time.monotonic()
        record = self._event(session, "C-MOVE")
        try:
            if not self._allowed(session, Action.RETRIEVE):
                raise _Refusal(self._refused(session, Action.RETRIEVE))
            assert session is not None
            name = str(event.move_destination or "").strip()
            peer = get_peer(self.stores.catalog, name) if name else None
            if peer is None:
                log.info("DIMSE: C-MOVE to unknown destination %r (tessel ae add NAME HOST PORT)", name)
                raise MoveDestinationUnknown(f"move destination {name!r} is not registered")
            record.detail = f"to {name}"
            datastore_id, found = self._targets(event, session, record)
        except (MoveDestinationUnknown, _Refusal) as exc:
            # 0xA801 Move Destination Unknown. (Callers without retrieve rights never get here:
            # their association was not offered the C-MOVE contexts.)
            self._record(record, NOT_AUTHORIZED if isinstance(exc, _Refusal) else 0xA801, started)
            yield None, None
            return
        except Exception as exc:  # reported as the one (failed) sub-operation
            answer = failure(exc, Service.RETRIEVE)
            self._record(record, int(answer.Status), started)
            yield retrieve.destination(peer, [], sub)
            yield 1
            yield answer, None
            return
        _name_targets(record, found)
        if not found:  # pynetdicom reads no further than a count of 0
            self._record(record, SUCCESS, started)
        yield retrieve.destination(peer, found, sub)
        yield len(found)
        yield from self._sub_operations(record, started, datastore_id, found, lambda: sub.assoc, event)

    def _sub_operations(self, record: Event, started: float, datastore_id: str | None, found: list[retrieve.Target],
                        association: Callable[[], Any], event: Any) -> Iterator[Any]:
        """C-GET/C-MOVE: one C-STORE sub-operation per instance found (on `association()`), each
        answer passed on; the record gets the last status other than Pending."""
        if not found:
            return
        assert datastore_id is not None
        last = SUCCESS
        for answer in guarded(Service.RETRIEVE, retrieve.sub_operations(
                self.stores, datastore_id, found, association, lambda: bool(event.is_cancelled))):
            code = answer[0] if isinstance(answer[0], int) else int(getattr(answer[0], "Status", SUCCESS))
            last = code if code != PENDING else last
            yield answer
        self._record(record, last, started)

    def _on_action(self, event: Any) -> tuple[Dataset | int, Dataset | None]:
        session = self._session(event.assoc)
        started = time.monotonic()
        record = self._event(session, "N-ACTION")
        if not self._allowed(session, Action.STORE):
            self._record(record, NOT_AUTHORIZED, started)
            return self._refused(session, Action.STORE), None
        assert session is not None and self.ae is not None
        ae = self.ae

        def work() -> int:
            if str(event.request.RequestedSOPClassUID) != StorageCommitmentPushModel:
                raise IdentifierMismatch("N-ACTION is only supported for Storage Commitment Push Model")
            if event.action_type != 1:
                return 0x0123  # No Such Action
            request = commitment_request(event.action_information)
            job = commitment.CommitmentJob(
                self.stores, ae, event.assoc, session.grant.calling_ae_title,
                self._datastore(session, create=False), request,
                flush=lambda ds: self.queue.flush(ds, COMMITMENT_FLUSH_SECONDS))
            session.commitments.append(job)
            job.start()
            return SUCCESS

        result = guard(Service.COMMIT, work)
        self._record(record, result if isinstance(result, int) else int(result.Status), started)
        return result, None


def start_server(stores: Stores, settings: Settings | None = None, *, block: bool = False) -> DimseServer:
    """Start a DIMSE server on `settings` (default: the stores' settings); `block` serves until ^C."""
    server = DimseServer(stores, settings)
    server.start()
    if block:
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
        finally:
            server.stop()
    return server


def _name_targets(record: Event, found: list[retrieve.Target]) -> None:
    """The study (and series, instance) a retrieve sent, when it sent from one."""
    studies = {t.study_instance_uid for t in found}
    record.detail = ((record.detail or "") + f" {len(found)} instance(s)").strip()
    if len(studies) == 1:
        record.study_uid = next(iter(studies))
        series = {t.series_instance_uid for t in found}
        record.series_uid = next(iter(series)) if len(series) == 1 else None
        record.sop_uid = found[0].sop_instance_uid if len(found) == 1 else None


class _Refusal(Exception):
    def __init__(self, answer: Dataset) -> None:
        super().__init__("refused")
        self.answer = answer


def _reject(assoc: Association, result: int, diagnostic: int) -> None:
    """A-ASSOCIATE-RJ (source: service user), then wait for it to go out as pynetdicom's ACSE does."""
    assoc.acse.send_reject(result, 0x01, diagnostic)
    assoc.kill()


def _withhold_services(assoc: Association, grant: Grant) -> None:
    """Offer only the services the caller may use: their contexts are rejected at negotiation."""
    withheld: set[str] = set()
    if not grant.query:
        withheld.update(find.FIND_MODELS)
    if not grant.retrieve:
        withheld.update((*retrieve.GET_MODELS, *retrieve.MOVE_MODELS))
    if not grant.store:
        withheld.add(StorageCommitmentPushModel)
    if withheld:
        assoc.acceptor.supported_contexts = [cx for cx in assoc.acceptor.supported_contexts
                                             if cx.abstract_syntax not in withheld]


def _prefer_syntaxes(assoc: Association) -> None:
    """Reorder/trim the transfer syntaxes of proposed storage contexts before negotiation.

    Unrestricted storage accepts a context's first proposed syntax. For contexts this side
    receives on (C-STORE), keep only syntaxes tessel reads, so a context is never accepted in
    one it cannot store. For contexts the peer receives on (C-GET: it asks for the SCP role),
    keep the peer's preference when tessel can produce it from lossless frames (uncompressed,
    HTJ2K, JPEG 2000 lossless); otherwise put uncompressed first, the one syntax every stored
    instance can be sent in. (A peer that proposes one context per syntax gets each accepted,
    and every instance then goes as stored when its syntax is among them.)
    """
    roles = assoc.requestor.role_selection
    for cx in assoc.requestor.primitive.presentation_context_definition_list:
        proposed = [str(ts) for ts in cx.transfer_syntax]
        role = roles.get(cx.abstract_syntax)
        if role is not None and role.scp_role:
            if proposed and proposed[0] not in _UNCOMPRESSED | LOSSLESS_FORMATS:
                cx.transfer_syntax = ([ts for ts in proposed if ts in _UNCOMPRESSED]
                                      + [ts for ts in proposed if ts not in _UNCOMPRESSED])
        else:
            readable = [ts for ts in proposed if ts in READABLE_SYNTAXES]
            if readable and readable != proposed:
                cx.transfer_syntax = readable
