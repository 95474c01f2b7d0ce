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

__all__ = ["AuditLog", "Event", "Filters", "Interface", "Outcome", "Verification", "event_of", "record_command",
           "records", "verify"]

SCOPE_KEY = "tessel.audit"


def event_of(request: Any) -> Event | None:
    """The audit event of an HTTP request (set by the audit middleware), if it is audited."""
    event = request.scope.get(SCOPE_KEY)
    return event if isinstance(event, Event) else None


def record_command(catalog: Any, chain_key: bytes, action: str, detail: str, *, outcome: str = "allowed") -> None:
    """Record an administrative command (tessel keys ..., tessel master-key ...) run on this machine."""
    import getpass
    import os

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    log = AuditLog(catalog, chain_key)
    log.record(Event(Interface.CLI.value, action=f"tessel:{action}", principal=f"os:{user}", auth="local",
                     principal_name=user, outcome=outcome, detail=detail, status=0))
    log.stop()
