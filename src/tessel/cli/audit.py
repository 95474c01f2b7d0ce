"""`tessel audit [filters] [--json]` (query and export the audit trail) and `tessel audit verify`."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import sys
import time
from collections.abc import Callable
from typing import Any

from tessel.audit import Filters, records, verify
from tessel.auth.tokens import parse_ttl
from tessel.config import Settings
from tessel.crypto import AUDIT_CHAIN
from tessel.errors import InvalidInput
from tessel.stores import open_stores


def parse_time(text: str, *, now: float | None = None) -> float:
    """Epoch seconds of '2026-03-01', '2026-03-01T12:00:00Z', '1767225600' or a span ago ('15m', '7d').

    >>> parse_time("90m", now=10_000.0)
    4600.0
    >>> parse_time("2026-01-01T00:00:00Z")
    1767225600.0
    """
    text = text.strip()
    if re.fullmatch(r"\d+[smhd]", text.lower()):
        return (now if now is not None else time.time()) - parse_ttl(text)
    if re.fullmatch(r"\d{9,}(\.\d+)?", text):
        return float(text)
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(f"{text!r} is not a time: give 2026-03-01, 2026-03-01T12:00:00Z, epoch seconds "
                           "or a span ago such as 15m, 2h, 7d") from None
    return (value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)).timestamp()


def _iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _export(row: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in row.items() if v is not None}
    out["time"] = _iso(row["time"])
    return out


def _line(row: dict[str, Any]) -> str:
    who = row["principal_name"] if row["principal_name"] and not row["principal_name"].startswith("(") \
        else row["principal"]
    what = row["image_set_id"] and f"imageset/{row['image_set_id']}" or row["sop_uid"] and f"sop/{row['sop_uid']}" \
        or row["series_uid"] and f"series/{row['series_uid']}" or row["study_uid"] and f"study/{row['study_uid']}" \
        or row["datastore_id"] and f"datastore/{row['datastore_id']}" or "-"
    return (f"{row['seq']:>8} {_iso(row['time'])} {who[:24]:<24} {row['source'] or '-':<15} {row['interface']:<8} "
            f"{row['action'][:40]:<40} {what[:60]:<60} {row['outcome']:<7} {row['status'] or '-':>5} "
            f"{row['bytes_out']:>9}")


def cmd_audit(args: argparse.Namespace, settings: Settings) -> int:
    stores = open_stores(settings)
    try:
        if args.command == "verify":
            assert stores.crypto is not None
            result = verify(stores.catalog, stores.crypto.secret(AUDIT_CHAIN, always=True))
            if result.ok:
                print(f"audit trail intact: {result.checked} record(s) verified")
                return 0
            print(f"audit trail BROKEN at record {result.bad_seq}: {result.reason} "
                  f"({result.checked} record(s) before it verified)", file=sys.stderr)
            return 1
        filters = Filters(principal=args.principal, patient_id=args.patient, image_set_id=args.image_set,
                          datastore_id=args.datastore, study_uid=args.study, interface=args.interface,
                          action=args.action, outcome=args.outcome,
                          since=parse_time(args.since) if args.since else None,
                          until=parse_time(args.until) if args.until else None)
        rows = records(stores.catalog, filters, limit=args.limit, newest_first=args.newest_first)
        if args.json:
            for row in rows:
                sys.stdout.write(json.dumps(_export(row), ensure_ascii=False) + "\n")
            return 0
        print(f"{'SEQ':>8} {'TIME':<24} {'PRINCIPAL':<24} {'SOURCE':<15} {'IFACE':<8} {'ACTION':<40} "
              f"{'RESOURCE':<60} {'OUTCOME':<7} {'STAT':>5} {'BYTES':>9}")
        for row in rows:
            print(_line(row))
        return 0
    finally:
        stores.close()


def register(sub: Any, common: Callable[[argparse.ArgumentParser], None],
             func: Callable[[argparse.Namespace], int]) -> None:
    p = sub.add_parser("audit", help="query or export the audit trail; `tessel audit verify` checks its chain",
                       description="Every request on every interface, oldest first. `tessel audit verify` "
                                   "walks the hash chain and exits 1 naming the first altered or removed record.")
    common(p)
    p.add_argument("command", nargs="?", choices=["verify"], help="verify: check the hash chain")
    p.add_argument("--principal", help="access key id (or oidc:SUBJECT, ae:TITLE) or key name")
    p.add_argument("--patient", help="Patient ID whose data the request touched")
    p.add_argument("--image-set", help="image set id")
    p.add_argument("--datastore", help="datastore id")
    p.add_argument("--study", help="Study Instance UID")
    p.add_argument("--interface", choices=["ahi", "dicomweb", "dimse", "viewer", "cli"])
    p.add_argument("--action", help="e.g. medical-imaging:GetImageFrame, GetImageFrame or dimse:C-STORE")
    p.add_argument("--outcome", choices=["allowed", "denied", "invalid", "error"])
    p.add_argument("--since", help="from this time: 2026-03-01, 2026-03-01T12:00:00Z, epoch seconds, or 15m/2h/7d ago")
    p.add_argument("--until", help="before this time (same forms)")
    p.add_argument("--limit", type=int, help="at most this many records")
    p.add_argument("--newest-first", action="store_true", help="newest records first")
    p.add_argument("--json", action="store_true", help="JSON lines (one record per line): for export")
    p.set_defaults(func=func)
