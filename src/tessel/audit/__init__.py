"""The audit trail: every request on every interface, append-only and hash-chained.

    log = AuditLog(catalog, chain_key); log.start()
    log.record(Event(Interface.AHI, "medical-imaging:GetImageFrame", ...))   # from any thread
    verify(catalog, chain_key)                                              # tessel audit verify
"""

from __future__ import annotations

from typing import Any

from tessel.audit.log import AuditLog
from tessel.audit.records import Event, Interface, Outcome
from tessel.audit.search import Filters, Verification, records, verify

__all__ = ["AuditLog", "Event", "Filters", "Interface", "Outcome", "Verification", "event_of", "records", "verify"]

SCOPE_KEY = "tessel.audit"


def event_of(request: Any) -> Event | None:
    """The audit event of an HTTP request (set by the audit middleware), if it is audited."""
    event = request.scope.get(SCOPE_KEY)
    return event if isinstance(event, Event) else None
