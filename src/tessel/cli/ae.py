"""`tessel ae add NAME HOST PORT | list | remove NAME`: the DICOM peers (AE registry)."""

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


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add `tessel ae ...` to the top-level parser."""
    ae = sub.add_parser("ae", help="DICOM peers that tessel connects to (C-MOVE destinations)")
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
