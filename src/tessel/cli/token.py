"""`tessel token create [--key KEY_ID] [--ttl 1h]`: print a Bearer token for DICOMweb and the viewer."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from tessel.auth import KeyStatus, KeyStore
from tessel.auth.tokens import TokenSigner, parse_ttl
from tessel.catalog import Catalog
from tessel.config import Settings
from tessel.errors import InvalidInput, NotFound
from tessel.stores import data_keys


def create_token(settings: Settings, key_id: str | None, ttl: str) -> str:
    """A token for `key_id` (default: the administrator key in use) valid for `ttl`."""
    seconds = parse_ttl(ttl)
    if settings.catalog_url is None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    catalog = Catalog.open(settings.resolved_catalog_url)
    try:
        keys = KeyStore(catalog, data_keys(settings, catalog))
        if key_id is None:
            if settings.access_key_id:
                key_id = settings.access_key_id
            else:
                admins = [k for k in keys.list() if k.is_admin and k.status == KeyStatus.ACTIVE]
                if not admins:
                    raise NotFound("there is no administrator key yet: start `tessel serve` once, or give --key")
                key_id = admins[0].access_key_id
        key = keys.get(key_id)
        if key is None:
            raise NotFound(f"access key {key_id} does not exist")
        if key.status != KeyStatus.ACTIVE:
            raise InvalidInput(f"access key {key_id} is disabled")
        return TokenSigner(catalog, settings.data_dir).create(key_id, seconds)
    finally:
        catalog.close()


def cmd_token(args: argparse.Namespace, settings: Settings) -> int:
    if args.token_command != "create":  # pragma: no cover - argparse requires a subcommand
        return 2
    token = create_token(settings, args.key, args.ttl)
    print(token)
    print(f"valid for {args.ttl}; send it as 'Authorization: Bearer <token>'", file=sys.stderr)
    return 0


def register(sub: Any, common: Callable[[argparse.ArgumentParser], None],
             func: Callable[[argparse.Namespace], int]) -> None:
    """Add `token create` to the `tessel` parser."""
    p = sub.add_parser("token", help="Bearer tokens for DICOMweb and the viewer")
    tokens = p.add_subparsers(dest="token_command", required=True)
    create = tokens.add_parser("create", help="print a new Bearer token (a signed JWT with an expiry)")
    common(create)
    create.add_argument("--key", help="access key id the token acts as (default: the administrator key)")
    create.add_argument("--ttl", default="1h", help="lifetime: 90, 30s, 15m, 1h, 7d (default 1h)")
    create.set_defaults(func=func)
