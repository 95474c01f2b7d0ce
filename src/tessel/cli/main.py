"""`tessel` command line: serve, import, demo."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

from tessel.cli import ae as ae_cli
from tessel.cli import audit as audit_cli
from tessel.cli import keys as keys_cli
from tessel.cli import token as token_cli
from tessel.config import Settings, load_settings
from tessel.errors import TesselError


def _settings(args: argparse.Namespace) -> Settings:
    flags = {name: getattr(args, name, None) for name in
             ("data_dir", "host", "port", "dicom_port", "ae_title", "dicom_datastore", "workers",
              "access_log")}
    return load_settings(flags)


def cmd_serve(args: argparse.Namespace) -> int:
    from tessel.app import serve

    if args.no_auth:
        print("WARNING: --no-auth: DICOMweb answers ANYONE who can reach this port, without credentials. "
              "Use it only for a local demo.", file=sys.stderr, flush=True)
    serve(_settings(args), no_auth=args.no_auth)
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if not settings.dask_scheduler:
        from tessel.forkserver import fork_server

        fork_server()  # it imports the staging code while this process imports the rest, side by side
    from tessel.cli.importing import import_path

    summary = import_path(settings, Path(args.path), args.datastore)
    return 0 if summary.failed == 0 else 3


def cmd_demo(args: argparse.Namespace) -> int:
    from tessel.cli.demo import run_demo

    return run_demo(_settings(args), serve_after=not args.no_serve)


def cmd_token(args: argparse.Namespace) -> int:
    return token_cli.cmd_token(args, _settings(args))


def cmd_keys(args: argparse.Namespace) -> int:
    return keys_cli.cmd_keys(args, _settings(args))


def cmd_master_key(args: argparse.Namespace) -> int:
    return keys_cli.cmd_master_key(args, _settings(args))


def cmd_audit(args: argparse.Namespace) -> int:
    return audit_cli.cmd_audit(args, _settings(args))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tessel", description="Self-hosted medical imaging store.")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data-dir", type=Path, help="where the embedded catalog and blobs live "
                                                     "(env TESSEL_DATA_DIR, default ./tessel-data)")
        p.add_argument("--workers", type=int, help="processes for import work (default: cores)")

    def server_flags(p: argparse.ArgumentParser) -> None:
        p.add_argument("--host", help="HTTP bind address (default 127.0.0.1)")
        p.add_argument("--port", type=int, help="HTTP port (default 8080)")
        p.add_argument("--dicom-port", type=int, help="DICOM port (default 11112)")
        p.add_argument("--ae-title", help="DIMSE AE title (default TESSEL)")
        p.add_argument("--dicom-datastore", help="datastore (id or name) that DIMSE stores into and "
                                                 "queries (default: the only datastore)")

    p = sub.add_parser("serve", help="serve the HTTP API (and DIMSE) on the data directory")
    common(p)
    server_flags(p)
    p.add_argument("--access-log", action="store_true", default=None,
                   help="log every HTTP request (client, method, path, status) to standard output")
    p.add_argument("--no-auth", action="store_true",
                   help="let DICOMweb requests without credentials in (local demos only)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("import", help="import DICOM files from a folder (recursive) or one file")
    common(p)
    p.add_argument("path", help="folder or file to import")
    p.add_argument("--datastore", default="default",
                   help="datastore name or id; created if it does not exist (default: 'default')")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("demo", help="generate and import the sample studies, then serve")
    common(p)
    server_flags(p)
    p.add_argument("--no-serve", action="store_true", help="load the samples and exit")
    p.set_defaults(func=cmd_demo)

    ae_cli.register(sub)
    token_cli.register(sub, common, cmd_token)
    keys_cli.register(sub, common, cmd_keys, cmd_master_key)
    audit_cli.register(sub, common, cmd_audit)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result: Any = args.func(args)
        return int(result)
    except TesselError as exc:
        print(f"tessel: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
