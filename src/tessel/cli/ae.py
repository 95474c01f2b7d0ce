"""`tessel ae ...`: the DICOM peers tessel connects to, and who may connect to tessel.

    tessel ae add NAME HOST PORT | list | remove NAME      the AE registry (C-MOVE destinations)
    tessel ae allow NAME [--host H]... [--no-store] [--no-query] [--no-retrieve] [--datastore D]
    tessel ae revoke NAME                                  edit <data dir>/dicom-access.json
    tessel ae access [--json]                              show who may do what
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from tessel.config import load_settings

if TYPE_CHECKING:
    from tessel.stores import Stores


def _stores(args: argparse.Namespace) -> "Stores":
    from tessel.stores import open_stores

    return open_stores(load_settings({"data_dir": getattr(args, "data_dir", None)}))


def cmd_add(args: argparse.Namespace) -> int:
    from tessel.dimse.peers import add_peer

    stores = _stores(args)
    try:
        peer, created = add_peer(stores.catalog, args.name, args.host, args.port)
    finally:
        stores.close()
    print(f"{'added' if created else 'updated'} {peer.name} at {peer.host}:{peer.port}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from tessel.dimse.peers import list_peers

    stores = _stores(args)
    try:
        peers = list_peers(stores.catalog)
    finally:
        stores.close()
    if args.json:
        print(json.dumps([{"name": p.name, "host": p.host, "port": p.port} for p in peers], indent=2))
        return 0
    if not peers:
        print("no DICOM peers registered (tessel ae add NAME HOST PORT)")
        return 0
    width = max(4, *(len(p.name) for p in peers))
    host_width = max(4, *(len(p.host) for p in peers))
    print(f"{'NAME':<{width}}  {'HOST':<{host_width}}  PORT")
    for p in peers:
        print(f"{p.name:<{width}}  {p.host:<{host_width}}  {p.port}")
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    from tessel.dimse.peers import remove_peer

    stores = _stores(args)
    try:
        peer = remove_peer(stores.catalog, args.name)
    finally:
        stores.close()
    print(f"removed {peer.name}")
    return 0


def _access_path(args: argparse.Namespace) -> Path:
    from tessel.dimse.access import FILE_NAME

    return load_settings({"data_dir": getattr(args, "data_dir", None)}).data_dir / FILE_NAME


def cmd_allow(args: argparse.Namespace) -> int:
    from tessel.dimse.access import ANY, DEFAULT_CALLERS, caller_entry, read_callers, write_callers
    from tessel.dimse.peers import ae_title

    path = _access_path(args)
    name = args.name.strip() if args.name.strip() == ANY else ae_title(args.name)
    if args.datastore:
        _check_datastore(args, args.datastore)
    existed = path.exists()
    callers = read_callers(path)
    callers[name] = caller_entry(args.host, args.store, args.query, args.retrieve, args.datastore)
    write_callers(path, callers)
    print(f"{'updated' if existed else 'created'} {path}: {name} may "
          f"{_rights(callers[name])} from {', '.join(args.host) if args.host else 'any address'}")
    if not existed and name != ANY:
        print(f"other AE titles keep the default (everything, from loopback only): entry "
              f"{ANY!r} {DEFAULT_CALLERS[ANY]}; `tessel ae revoke '*'` rejects them")
    return 0


def _check_datastore(args: argparse.Namespace, named: str) -> None:
    from tessel.errors import NotFound

    stores = _stores(args)
    try:
        found = stores.catalog.get_datastore(named) or stores.catalog.find_datastore(name=named)
    finally:
        stores.close()
    if found is None or found.status.value == "DELETED":
        raise NotFound(f"no datastore has the id or name {named!r}")


def _rights(entry: dict[str, object]) -> str:
    rights = [r for r in ("store", "query", "retrieve") if entry.get(r, True)]
    where = f" in datastore {entry['datastore']}" if entry.get("datastore") else ""
    return (", ".join(rights) if rights else "only verify (C-ECHO)") + where


def cmd_revoke(args: argparse.Namespace) -> int:
    from tessel.dimse.access import read_callers, write_callers
    from tessel.errors import NotFound

    path = _access_path(args)
    callers = read_callers(path)
    name = args.name.strip()
    if name not in callers:
        raise NotFound(f"{path.name} has no entry for {name!r} (tessel ae access lists them)")
    del callers[name]
    write_callers(path, callers)
    print(f"removed {name} from {path}" + ("; no caller is allowed any more" if not callers else ""))
    return 0


def cmd_access(args: argparse.Namespace) -> int:
    from tessel.dimse.access import describe, read_callers

    path = _access_path(args)
    rows = describe(read_callers(path))  # InvalidInput (exit 2, with the reason) if the file is broken
    if args.json:
        print(json.dumps({"file": str(path), "exists": path.exists(), "callers": rows}, indent=2))
        return 0
    print(f"{path}" + ("" if path.exists() else " (absent: the default policy applies)"))
    if not rows:
        print("no caller may associate")
        return 0
    width = max(8, *(len(r["ae_title"]) for r in rows))
    print(f"{'AE TITLE':<{width}}  {'STORE':<5}  {'QUERY':<5}  {'RETRIEVE':<8}  {'DATASTORE':<12}  HOSTS")
    for r in rows:
        hosts = r["hosts"] if isinstance(r["hosts"], str) else ", ".join(r["hosts"])
        print(f"{r['ae_title']:<{width}}  {_yes(r['store']):<5}  {_yes(r['query']):<5}  {_yes(r['retrieve']):<8}  "
              f"{r['datastore'] or '(default)':<12}  {hosts}")
    return 0


def _yes(value: object) -> str:
    return "yes" if value else "no"


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add `tessel ae ...` to the top-level parser."""
    ae = sub.add_parser("ae", help="DICOM peers: C-MOVE destinations and who may call tessel")
    ae_sub = ae.add_subparsers(dest="ae_command", required=True)

    def data_dir(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data-dir", type=Path, help="where the embedded catalog and blobs live "
                                                     "(env TESSEL_DATA_DIR, default ./tessel-data)")

    p = ae_sub.add_parser("add", help="register a peer (or change its address)")
    data_dir(p)
    p.add_argument("name", help="the peer's AE title (up to 16 characters)")
    p.add_argument("host", help="host name or IP address")
    p.add_argument("port", type=int, help="TCP port")
    p.set_defaults(func=cmd_add)

    p = ae_sub.add_parser("list", help="list registered peers")
    data_dir(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_list)

    p = ae_sub.add_parser("remove", help="forget a peer")
    data_dir(p)
    p.add_argument("name", help="the peer's AE title")
    p.set_defaults(func=cmd_remove)

    p = ae_sub.add_parser("allow", help="let a calling AE title associate (dicom-access.json)",
                          description="Add or replace NAME's entry in <data dir>/dicom-access.json. "
                                      "Without --host it may call from any address.")
    data_dir(p)
    p.add_argument("name", help="the calling AE title, or '*' for every title without an entry")
    p.add_argument("--host", action="append", metavar="ADDRESS", help="an address or network (CIDR) it may "
                                                                      "call from; repeatable")
    p.add_argument("--no-store", dest="store", action="store_false", help="refuse its C-STORE")
    p.add_argument("--no-query", dest="query", action="store_false", help="refuse its C-FIND")
    p.add_argument("--no-retrieve", dest="retrieve", action="store_false", help="refuse its C-GET and C-MOVE")
    p.add_argument("--datastore", help="datastore (id or name) it stores into and reads "
                                       "(default: the server's DIMSE datastore)")
    p.set_defaults(func=cmd_allow)

    p = ae_sub.add_parser("revoke", help="remove a calling AE title's entry (it is then rejected)")
    data_dir(p)
    p.add_argument("name", help="the calling AE title, or '*'")
    p.set_defaults(func=cmd_revoke)

    p = ae_sub.add_parser("access", help="show which calling AE titles may store, query and retrieve")
    data_dir(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_access)
