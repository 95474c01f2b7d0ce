"""`tessel keys ...` (access keys and their policies) and `tessel master-key ...` (encryption at rest).

    tessel keys create NAME [--policy FILE]   # prints the new key id and secret, once
    tessel keys list | show KEY_ID | disable KEY_ID | enable KEY_ID | rotate KEY_ID
    tessel keys set-policy KEY_ID (FILE | --admin)
    tessel master-key list | create NAME | rotate [NAME]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tessel.audit import record_command
from tessel.auth import KeyStatus, KeyStore, parse_policy
from tessel.crypto import AUDIT_CHAIN
from tessel.config import Settings
from tessel.errors import InvalidInput, NotFound
from tessel.stores import Stores, open_stores


def _policy_file(path: str) -> dict[str, Any]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"cannot read policy file {path}: {exc.strerror}") from None
    return dict(parse_policy(text).document)  # checked now: a bad policy never reaches the catalog


def _when(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _audit(stores: Stores, action: str, detail: str) -> None:
    """Key and master-key changes go into the audit trail, as requests do."""
    assert stores.crypto is not None
    record_command(stores.catalog, stores.crypto.secret(AUDIT_CHAIN, always=True), action, detail)


def _with_keys(settings: Settings, work: Callable[[Stores, KeyStore], int]) -> int:
    stores = open_stores(settings)
    try:
        assert stores.crypto is not None
        return work(stores, KeyStore(stores.catalog, stores.crypto, ttl=0))
    finally:
        stores.close()


def _print_secret(key_id: str, secret: str) -> None:
    print(f"AWS_ACCESS_KEY_ID={key_id}")
    print(f"AWS_SECRET_ACCESS_KEY={secret}")
    print("the secret is shown only now: keep it (it cannot be read back, only rotated)", file=sys.stderr)


def cmd_keys(args: argparse.Namespace, settings: Settings) -> int:
    command = args.keys_command

    def work(stores: Stores, keys: KeyStore) -> int:
        if command == "create":
            policy = _policy_file(args.policy) if args.policy else None
            key = keys.create(args.name, policy=policy)
            kind = "administrator" if key.policy is None else f"{len(key.policy.statements)} statement(s)"
            _audit(stores, "keys.create", f"access key {key.access_key_id} ({key.name}) created: {kind}")
            _print_secret(key.access_key_id, key.secret.reveal())
            return 0
        if command == "list":
            rows = keys.list()
            if args.json:
                for k in rows:
                    print(json.dumps({"accessKeyId": k.access_key_id, "name": k.name, "status": k.status.value,
                                      "createdAt": _when(k.created_at),
                                      "policy": dict(k.policy.document) if k.policy else None}))
                return 0
            print(f"{'ACCESS KEY ID':<22} {'STATUS':<9} {'CREATED':<21} {'POLICY':<16} NAME")
            for k in rows:
                policy = "administrator" if k.policy is None else f"{len(k.policy.statements)} statement(s)"
                print(f"{k.access_key_id:<22} {k.status.value:<9} {_when(k.created_at):<21} {policy:<16} {k.name}")
            return 0
        key_id = args.key_id
        if command == "show":
            key = keys.get(key_id)
            if key is None:
                raise NotFound(f"access key {key_id} does not exist")
            print(json.dumps({"accessKeyId": key.access_key_id, "name": key.name, "status": key.status.value,
                              "createdAt": _when(key.created_at),
                              "policy": dict(key.policy.document) if key.policy else None}, indent=2))
            return 0
        if command in ("disable", "enable"):
            keys.set_status(key_id, KeyStatus.DISABLED if command == "disable" else KeyStatus.ACTIVE)
            _audit(stores, f"keys.{command}", f"access key {key_id} {command}d")
            print(f"access key {key_id} is now {'Disabled' if command == 'disable' else 'Active'} "
                  "(a running server applies it within 2 seconds)")
            return 0
        if command == "rotate":
            key = keys.rotate(key_id)
            _audit(stores, "keys.rotate", f"access key {key_id} given a new secret")
            _print_secret(key.access_key_id, key.secret.reveal())
            return 0
        if command == "set-policy":
            if args.admin == bool(args.policy):
                raise InvalidInput("give a policy FILE or --admin")
            keys.set_policy(key_id, None if args.admin else _policy_file(args.policy))
            _audit(stores, "keys.set-policy", f"access key {key_id}: " + ("made administrator" if args.admin
                                                                           else f"policy from {args.policy}"))
            print(f"access key {key_id}: policy replaced")
            return 0
        return 2  # pragma: no cover - argparse requires a subcommand

    return _with_keys(settings, work)


def cmd_master_key(args: argparse.Namespace, settings: Settings) -> int:
    stores = open_stores(settings)
    try:
        keys = stores.crypto
        assert keys is not None
        ring = keys.keyring
        if args.master_command == "list":
            usage = keys.usage()
            print(f"master keys from: {ring.path}")
            for entry in ring.describe():
                wraps = sum(n for (name, _), n in usage.items() if name == entry["name"])
                default = " (default)" if entry["default"] else ""
                print(f"{entry['name']}{default}: current version {entry['current']}, versions "
                      f"{', '.join(entry['versions'])}; wraps {wraps} data key(s); kmsKeyArn "
                      f"arn:aws:kms:{settings.region}:{settings.account_id}:key/{entry['name']}")
            return 0
        if args.master_command == "create":
            version = ring.create_key(args.name)
            _audit(stores, "master-key.create", f"master key {args.name} created (version {version})")
            print(f"master key {args.name} created (version {version}); use it with CreateDatastore "
                  f"kmsKeyArn=arn:aws:kms:{settings.region}:{settings.account_id}:key/{args.name}")
            return 0
        name = args.name or ring.default
        if ring.fixed:  # TESSEL_MASTER_KEY: the operator already put the new material first
            count = keys.rewrap(name)
            _audit(stores, "master-key.rotate", f"master key {name}: {count} data key(s) re-wrapped to the "
                   f"current material of {ring.path}")
            print(f"master key {name}: re-wrapped {count} data key(s) to its current material; now remove the "
                  f"older material from {ring.path} (every server); no blob was rewritten")
            return 0
        # 1. new material becomes current (old kept), 2. re-wrap, 3. drop the old material.
        version = ring.add_version(name)
        count = keys.rewrap(name)
        count += keys.rewrap(name)  # anything a running server wrapped meanwhile
        dropped = ring.drop_old_versions(name)
        _audit(stores, "master-key.rotate", f"master key {name}: version {version}, {count} data key(s) re-wrapped, "
               f"removed {', '.join(dropped) or '-'}")
        print(f"master key {name}: new version {version}; re-wrapped {count} data key(s); removed version(s) "
              f"{', '.join(dropped) or '-'}; no blob was rewritten")
        return 0
    finally:
        stores.close()


def register(sub: Any, common: Callable[[argparse.ArgumentParser], None],
             keys_func: Callable[[argparse.Namespace], int],
             master_func: Callable[[argparse.Namespace], int]) -> None:
    p = sub.add_parser("keys", help="access keys (principals) and their policies")
    cmds = p.add_subparsers(dest="keys_command", required=True)
    c = cmds.add_parser("create", help="make an access key; prints its id and secret once")
    c.add_argument("name", help="who or what the key is for")
    c.add_argument("--policy", help="IAM-style policy JSON file (default: an administrator key)")
    c = cmds.add_parser("list", help="every access key, its status and policy")
    c.add_argument("--json", action="store_true", help="one JSON object per line, with each policy")
    for name, text in (("show", "one key and its policy (never its secret)"),
                       ("disable", "refuse the key from now on (also its Bearer tokens)"),
                       ("enable", "accept a disabled key again"),
                       ("rotate", "give the key a new secret (printed once); the old one stops working")):
        c = cmds.add_parser(name, help=text)
        c.add_argument("key_id")
    c = cmds.add_parser("set-policy", help="replace a key's policy")
    c.add_argument("key_id")
    c.add_argument("policy", nargs="?", help="IAM-style policy JSON file")
    c.add_argument("--admin", action="store_true", help="remove the policy: the key may do everything")
    for c in cmds.choices.values():
        common(c)
        c.set_defaults(func=keys_func)

    p = sub.add_parser("master-key", help="master keys that wrap the data keys (encryption at rest)")
    cmds = p.add_subparsers(dest="master_command", required=True)
    cmds.add_parser("list", help="master keys, their versions and how many data keys each wraps")
    c = cmds.add_parser("create", help="add a master key (name it in CreateDatastore's kmsKeyArn)")
    c.add_argument("name")
    c = cmds.add_parser("rotate", help="new material for a master key; re-wraps its data keys, no data rewritten")
    c.add_argument("name", nargs="?", help="master key (default: the default key)")
    for c in cmds.choices.values():
        common(c)
        c.set_defaults(func=master_func)
