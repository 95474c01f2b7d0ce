"""Which calling AE titles may associate, store, query and retrieve, and where they store.

Policy lives in `<data dir>/dicom-access.json`, re-read when it changes (no restart):

    {"callers": {
        "CT01":  {"hosts": ["10.1.2.3", "10.1.2.0/24"], "store": true, "query": true,
                  "retrieve": false, "datastore": "<datastore id or name>"},
        "*":     {"hosts": ["127.0.0.1", "::1"], "query": true, "store": false, "retrieve": false}}}

A listed caller may do what its entry says (each permission defaults to true, `hosts` to any
address, `datastore` to the server's DIMSE datastore); "*" stands for every other AE title.
On top of these switches an entry may name the principal the caller acts as, whose policy
then decides each operation like any other request's (tessel.auth.access):

        "PACS2": {"access_key": "TSL...", ...}          # that key's policy (and it must be Active)
        "AI01":  {"policy": {"Statement": [...]}, ...}  # an inline IAM-style policy

C-STORE is checked as medical-imaging:StoreDICOM, C-FIND as SearchDICOMStudies / Series /
Instances by level, C-GET and C-MOVE as GetDICOMInstance, on the association's datastore.
Callers matching no entry, or calling from a host their entry does not list, are rejected at
association (A-ASSOCIATE-RJ). Without the file: every AE title may do everything, from
loopback addresses only. `tessel ae allow | revoke | access` edit and show the file.

The decision is made once per association (`AccessPolicy.decide` -> `Grant`) and each request
is checked with `Grant.allows(Action)`: the two places another policy (IAM-style) can hook in.
"""

from __future__ import annotations

import ipaddress
import json
import os
import threading
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from tessel.auth.policy import Policy, parse_policy
from tessel.errors import InvalidInput
from tessel.files import write_atomic

FILE_NAME = "dicom-access.json"
ANY = "*"


class Action(StrEnum):
    STORE = "store"  # C-STORE and storage commitment
    QUERY = "query"  # C-FIND
    RETRIEVE = "retrieve"  # C-GET and C-MOVE


class Reject(StrEnum):
    """A-ASSOCIATE-RJ reasons (result permanent, source DICOM UL service-user)."""

    CALLING_AE = "calling AE title not recognised"  # diagnostic 3
    HOST = "not allowed from this address"  # diagnostic 1 (no reason given)

    @property
    def diagnostic(self) -> int:
        return 0x03 if self is Reject.CALLING_AE else 0x01


@dataclass(frozen=True, slots=True)
class Grant:
    """What one association may do."""

    calling_ae_title: str
    store: bool = True
    query: bool = True
    retrieve: bool = True
    datastore: str | None = None  # id or name; None = the server's DIMSE datastore
    access_key: str | None = None  # the access key whose policy this caller acts under
    policy: Policy | None = None  # or an inline policy

    def allows(self, action: Action) -> bool:
        return bool(getattr(self, action.value))


@dataclass(frozen=True, slots=True)
class _Entry:
    hosts: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] | None  # None = any address
    store: bool
    query: bool
    retrieve: bool
    datastore: str | None
    access_key: str | None = None
    policy: Policy | None = None


_LOOPBACK: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = (
    ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        addr = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped  # ::ffff:127.0.0.1 from a dual-stack socket
    return addr


def _in(host: str, networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] | None) -> bool:
    if networks is None:
        return True
    addr = _address(host)
    return addr is not None and any(addr.version == n.version and addr in n for n in networks)


def _flag(entry: dict[str, Any], name: str, where: str) -> bool:
    value = entry.get(name, True)
    if not isinstance(value, bool):
        raise InvalidInput(f"{where}: {name!r} must be true or false")
    return value


def _entry(raw: Any, where: str) -> _Entry:
    if not isinstance(raw, dict):
        raise InvalidInput(f"{where} must be an object")
    unknown = set(raw) - {"hosts", "store", "query", "retrieve", "datastore", "access_key", "policy"}
    if unknown:
        raise InvalidInput(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    hosts = raw.get("hosts")
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] | None = None
    if hosts is not None and hosts != "any" and hosts != ["any"]:
        if not isinstance(hosts, list) or not all(isinstance(h, str) for h in hosts):
            raise InvalidInput(f"{where}: 'hosts' must be a list of addresses or networks, or \"any\"")
        try:
            networks = tuple(ipaddress.ip_network(h, strict=False) for h in hosts)
        except ValueError as exc:
            raise InvalidInput(f"{where}: {exc}") from None
    datastore = raw.get("datastore")
    if datastore is not None and not isinstance(datastore, str):
        raise InvalidInput(f"{where}: 'datastore' must be a datastore id or name")
    access_key = raw.get("access_key")
    if access_key is not None and (not isinstance(access_key, str) or not access_key):
        raise InvalidInput(f"{where}: 'access_key' must be an access key id")
    if access_key is not None and "policy" in raw:
        raise InvalidInput(f"{where}: give 'access_key' or 'policy', not both")
    try:
        policy = parse_policy(raw["policy"]) if "policy" in raw else None
    except InvalidInput as exc:
        raise InvalidInput(f"{where}: policy: {exc.message}") from None
    return _Entry(networks, _flag(raw, "store", where), _flag(raw, "query", where),
                  _flag(raw, "retrieve", where), datastore, access_key, policy)


@dataclass(frozen=True, slots=True)
class Decision:
    grant: Grant | None
    reject: Reject | None = None


class AccessPolicy:
    """The access file's rules, or the loopback-only default when there is no file."""

    def __init__(self, entries: dict[str, _Entry] | None) -> None:
        self._entries = entries  # None = no file: the default policy

    @classmethod
    def parse(cls, text: str, where: str = FILE_NAME) -> "AccessPolicy":
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"{where} is not valid JSON: {exc}") from None
        if not isinstance(raw, dict) or not isinstance(raw.get("callers"), dict):
            raise InvalidInput(f"{where} must be an object with a \"callers\" object")
        unknown = set(raw) - {"callers"}
        if unknown:
            raise InvalidInput(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
        entries = {}
        for name, value in raw["callers"].items():
            title = name.strip()
            if title != ANY and not (0 < len(title) <= 16 and title.isprintable() and "\\" not in title):
                raise InvalidInput(f"{where}: {name!r} is not an AE title (1-16 printable characters) or \"*\"")
            entries[title] = _entry(value, f"{where} callers[{name!r}]")
        return cls(entries)

    @property
    def is_default(self) -> bool:
        return self._entries is None

    def decide(self, calling_ae_title: str, host: str) -> Decision:
        title = calling_ae_title.strip()
        if self._entries is None:
            if _in(host, _LOOPBACK):
                return Decision(Grant(title))
            return Decision(None, Reject.HOST)
        entry = self._entries.get(title) or self._entries.get(ANY)
        if entry is None:
            return Decision(None, Reject.CALLING_AE)
        if not _in(host, entry.hosts):
            return Decision(None, Reject.HOST)
        return Decision(Grant(title, entry.store, entry.query, entry.retrieve, entry.datastore,
                              entry.access_key, entry.policy))


class AccessFile:
    """The policy of `<data dir>/dicom-access.json`, re-read when the file changes.

    A file that stops parsing keeps the last good policy in force (and the error is
    reported by `error`), so a typo while editing never opens or closes the door.
    """

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / FILE_NAME
        self._lock = threading.Lock()
        self._stamp: tuple[float, int] | None = None
        self._policy = AccessPolicy(None)
        self.error: str | None = None
        self._loaded = False

    def policy(self) -> AccessPolicy:
        try:
            st = os.stat(self.path)
            stamp: tuple[float, int] | None = (st.st_mtime, st.st_size)
        except FileNotFoundError:
            stamp = None
        with self._lock:
            if self._loaded and stamp == self._stamp:
                return self._policy
            if stamp is None:
                self._policy, self.error = AccessPolicy(None), None
            else:
                try:
                    self._policy = AccessPolicy.parse(self.path.read_text(encoding="utf-8"), str(self.path))
                    self.error = None
                except (InvalidInput, OSError) as exc:
                    self.error = exc.message if isinstance(exc, InvalidInput) else str(exc)
                    if not self._loaded:  # no good policy yet: refuse everyone rather than allow all
                        self._policy = AccessPolicy({})
            self._stamp, self._loaded = stamp, True
            return self._policy


# -- editing the file (tessel ae allow / revoke) -------------------------------------------------

DEFAULT_CALLERS: dict[str, Any] = {ANY: {"hosts": ["127.0.0.1", "::1"]}}  # the policy without a file


def read_callers(path: Path) -> dict[str, Any]:
    """The "callers" object of the access file (the default policy's entry when there is none)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return json.loads(json.dumps(DEFAULT_CALLERS))
    AccessPolicy.parse(text, str(path))  # refuse to edit a file that does not parse
    callers: dict[str, Any] = json.loads(text)["callers"]
    return callers


def write_callers(path: Path, callers: dict[str, Any]) -> None:
    """Replace the access file atomically (a running server picks it up at its next association)."""
    text = json.dumps({"callers": callers}, indent=2) + "\n"
    AccessPolicy.parse(text, str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, text.encode(), prefix=".dicom-access-")


def caller_entry(hosts: list[str] | None, store: bool, query: bool, retrieve: bool,
                 datastore: str | None) -> dict[str, Any]:
    """An entry as `tessel ae allow` writes it (only what differs from the defaults)."""
    entry: dict[str, Any] = {}
    if hosts:
        entry["hosts"] = hosts
    for name, value in (("store", store), ("query", query), ("retrieve", retrieve)):
        if not value:
            entry[name] = False
    if datastore:
        entry["datastore"] = datastore
    return entry


def describe(policy_callers: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per caller entry, every field spelled out (for `tessel ae access`)."""
    rows = []
    for title, raw in sorted(policy_callers.items(), key=lambda kv: (kv[0] == ANY, kv[0])):
        hosts = raw.get("hosts")
        rows.append({"ae_title": title, "hosts": "any" if hosts in (None, "any", ["any"]) else list(hosts),
                     "store": raw.get("store", True), "query": raw.get("query", True),
                     "retrieve": raw.get("retrieve", True), "datastore": raw.get("datastore")})
    return rows
