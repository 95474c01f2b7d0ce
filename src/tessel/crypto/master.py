"""Master keys: the keyring file that wraps every data key (TESSEL_MASTER_KEY_FILE).

The file is JSON, mode 0600, generated on first use in the data directory:

    {"format": "tessel-master-keys/1", "default": "tessel-default",
     "keys": {"tessel-default": {"current": "3f2a9c1e",
                                 "versions": {"3f2a9c1e": "<base64 of 32 random bytes>"}}}}

A master key has a name (what a datastore's kmsKeyArn names: `arn:aws:kms:...:key/NAME`)
and one or more versions of key material; each version is named by the first 8 hex digits
of the SHA-256 of its material, so a wrapped data key records exactly which material
wrapped it. Rotation adds a version, re-wraps the data keys and drops the old version;
nothing else is rewritten. The keyring is re-read when the file changes, so a server sees
a rotation made by `tessel master-key rotate` in another process.

Where secrets arrive as environment variables (Kubernetes, ECS, systemd credentials), the
keyring can instead come from TESSEL_MASTER_KEY (see `from_environment`); it is then
read-only: rotation means changing the variable (new material first, the old after it),
`tessel master-key rotate` to re-wrap, and dropping the old material from the variable.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tessel.errors import Corrupted, InvalidInput, NotFound, Unavailable
from tessel.files import write_atomic

FORMAT = "tessel-master-keys/1"
DEFAULT_NAME = "tessel-default"
FILE_NAME = "master.key"
NONCE = 12
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}")
# arn:aws:kms:REGION:ACCOUNT:key/NAME (or alias/NAME): the last path segment names the key.
_KMS_ARN = re.compile(r"arn:[a-z\-]+:kms:[^:]*:[^:]*:(?:key|alias)/(?P<name>.+)")


def version_of(material: bytes) -> str:
    return hashlib.sha256(material).hexdigest()[:8]


def key_name_from_arn(arn: str) -> str:
    """The master key a kmsKeyArn names: `arn:aws:kms:us-east-1:000000000000:key/NAME` -> NAME.

    >>> key_name_from_arn("arn:aws:kms:us-east-1:000000000000:key/tessel-default")
    'tessel-default'
    """
    m = _KMS_ARN.fullmatch(arn.strip())
    name = m.group("name") if m else arn.strip()
    if not _NAME.fullmatch(name):
        raise InvalidInput(f"kmsKeyArn {arn!r} does not name a master key "
                           "(expected arn:aws:kms:REGION:ACCOUNT:key/NAME)")
    return name


@dataclass
class _Key:
    current: str
    versions: dict[str, bytes] = field(default_factory=dict)


def _parse(text: str, where: Path) -> tuple[str, dict[str, _Key]]:
    try:
        raw = json.loads(text)
        if raw.get("format") != FORMAT:
            raise ValueError(f"format is not {FORMAT}")
        keys: dict[str, _Key] = {}
        for name, entry in raw["keys"].items():
            versions = {v: base64.b64decode(m, validate=True) for v, m in entry["versions"].items()}
            for version, material in versions.items():
                if len(material) != 32 or version_of(material) != version:
                    raise ValueError(f"key {name} version {version} is not 32 bytes matching its version")
            if entry["current"] not in versions:
                raise ValueError(f"key {name}: current version {entry['current']} is not listed")
            keys[name] = _Key(entry["current"], versions)
        default = raw["default"]
        if default not in keys:
            raise ValueError(f"the default key {default} is not listed")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise Unavailable(f"master key file {where} is not a valid keyring: {exc}") from None
    return default, keys


ENVIRONMENT = "TESSEL_MASTER_KEY"
# One entry of TESSEL_MASTER_KEY (':' is not a base64 character, so a name is unambiguous).
_ENTRY = re.compile(r"(?:(?P<name>[^:]*):)?(?P<materials>[A-Za-z0-9+/=,\s]+)")


class Keyring:
    """The master keys of one keyring file; thread-safe; re-read when the file changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fixed = False  # from the environment: nothing to re-read, nothing may be written
        self._lock = threading.Lock()
        self._stamp: tuple[float, int, int] | None = None
        self.default = DEFAULT_NAME
        self._keys: dict[str, _Key] = {}

    @classmethod
    def open(cls, path: Path, *, create: bool = True) -> "Keyring":
        """The keyring at `path`, generated (one new default key) if absent and `create`."""
        ring = cls(path)
        if not path.exists():
            if not create:
                raise NotFound(f"master key file {path} does not exist")
            material = secrets.token_bytes(32)
            ring._keys = {DEFAULT_NAME: _Key(version_of(material), {version_of(material): material})}
            ring._write(exclusive=True)
        ring.refresh()
        return ring

    @classmethod
    def from_environment(cls, value: str) -> "Keyring":
        """The keyring TESSEL_MASTER_KEY describes: entries separated by ';', each
        `[NAME:]MATERIAL[,OLDER_MATERIAL...]` with base64 32-byte material (`openssl rand
        -base64 32`); the first material of an entry is its current version, later ones only
        unwrap data keys not yet re-wrapped; the first entry is the default key (named
        tessel-default unless it says otherwise)."""
        ring = cls(Path(ENVIRONMENT))
        ring.fixed = True
        entries = [e.strip() for e in value.split(";") if e.strip()]
        if not entries:
            raise InvalidInput(f"{ENVIRONMENT} is empty")
        for index, entry in enumerate(entries):
            m = _ENTRY.fullmatch(entry)
            if m is None:
                raise InvalidInput(f"{ENVIRONMENT}: entry {index + 1} is not [NAME:]MATERIAL[,OLDER_MATERIAL...]")
            name, materials = m.group("name") or "", m.group("materials")
            name = name.strip() or (DEFAULT_NAME if index == 0 else "")
            if not _NAME.fullmatch(name):
                raise InvalidInput(f"{ENVIRONMENT}: entry {index + 1} needs a name (NAME:MATERIAL): "
                                   "letters, digits, '.', '_' and '-'")
            if name in ring._keys:
                raise InvalidInput(f"{ENVIRONMENT}: master key {name} is given twice")
            versions: dict[str, bytes] = {}
            for text in materials.split(","):
                try:
                    material = base64.b64decode(text.strip(), validate=True)
                except ValueError:
                    material = b""
                if len(material) != 32:
                    raise InvalidInput(f"{ENVIRONMENT}: master key {name}: each material must be 32 bytes "
                                       "in base64 (openssl rand -base64 32)")
                versions.setdefault(version_of(material), material)
            ring._keys[name] = _Key(next(iter(versions)), versions)
            if index == 0:
                ring.default = name
        return ring

    # -- reading ------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Re-read the file if it changed since the last read (a stat when it did not)."""
        if self.fixed:
            return
        try:
            st = os.stat(self.path)
        except OSError as exc:
            raise Unavailable(f"master key file {self.path} cannot be read: {exc.strerror}") from None
        stamp = (st.st_mtime, st.st_size, st.st_ino)
        with self._lock:
            if stamp == self._stamp:
                return
            try:
                text = self.path.read_text()
            except OSError as exc:
                raise Unavailable(f"master key file {self.path} cannot be read: {exc.strerror}") from None
            self.default, self._keys = _parse(text, self.path)
            self._stamp = stamp

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._keys)

    def versions(self, name: str) -> tuple[str, list[str]]:
        """(current version, every version) of a master key."""
        with self._lock:
            key = self._get(name)
            return key.current, sorted(key.versions)

    def _get(self, name: str) -> _Key:
        key = self._keys.get(name)
        if key is None:
            raise NotFound(f"master key {name!r} is not in {self.path} (tessel master-key list)")
        return key

    def has(self, name: str, version: str | None = None) -> bool:
        with self._lock:
            key = self._keys.get(name)
            return key is not None and (version is None or version in key.versions)

    # -- wrapping -----------------------------------------------------------------------------

    def wrap(self, name: str, plaintext: bytes, aad: bytes) -> tuple[str, bytes]:
        """(version, nonce + ciphertext) of `plaintext` under the current version of key `name`."""
        self.refresh()  # never wrap under a version a rotation in another process has retired
        with self._lock:
            key = self._get(name)
            version, material = key.current, key.versions[key.current]
        nonce = secrets.token_bytes(NONCE)
        return version, nonce + AESGCM(material).encrypt(nonce, plaintext, aad)

    def unwrap(self, name: str, version: str, wrapped: bytes, aad: bytes) -> bytes:
        if not self.has(name, version):
            self.refresh()
        with self._lock:
            key = self._get(name)
            material = key.versions.get(version)
        if material is None:
            raise Unavailable(f"master key {name} version {version} is not in {self.path}: it was "
                              "removed before every data key was re-wrapped, or the wrong key file is configured")
        try:
            return AESGCM(material).decrypt(wrapped[:NONCE], wrapped[NONCE:], aad)
        except InvalidTag:
            raise Corrupted(f"a wrapped data key under master key {name} failed its integrity check") from None

    # -- changing (the CLI) -------------------------------------------------------------------

    def _writable(self) -> None:
        if self.fixed:
            raise InvalidInput(f"the master keys come from {ENVIRONMENT}: change that variable instead "
                               "(docs/security.md, Encryption at rest)")

    def create_key(self, name: str) -> str:
        self._writable()
        if not _NAME.fullmatch(name):
            raise InvalidInput(f"master key name {name!r}: use letters, digits, '.', '_' and '-' (up to 128)")
        self.refresh()
        material = secrets.token_bytes(32)
        with self._lock:
            if name in self._keys:
                raise InvalidInput(f"master key {name} already exists")
            self._keys[name] = _Key(version_of(material), {version_of(material): material})
        self._write()
        return version_of(material)

    def add_version(self, name: str) -> str:
        """Make new material the current version of `name` (old versions stay until dropped)."""
        self._writable()
        self.refresh()
        material = secrets.token_bytes(32)
        with self._lock:
            key = self._get(name)
            key.versions[version_of(material)] = material
            key.current = version_of(material)
        self._write()
        return version_of(material)

    def drop_old_versions(self, name: str) -> list[str]:
        self._writable()
        self.refresh()
        with self._lock:
            key = self._get(name)
            dropped = sorted(v for v in key.versions if v != key.current)
            key.versions = {key.current: key.versions[key.current]}
        if dropped:
            self._write()
        return dropped

    def _write(self, *, exclusive: bool = False) -> None:
        self._writable()
        with self._lock:
            body = {"format": FORMAT, "default": self.default,
                    "keys": {name: {"current": k.current,
                                    "versions": {v: base64.b64encode(m).decode() for v, m in k.versions.items()}}
                             for name, k in sorted(self._keys.items())}}
            text = json.dumps(body, indent=2) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if exclusive:
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                return  # another process made it first: read theirs
            with os.fdopen(fd, "w") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            return
        write_atomic(self.path, text.encode(), prefix=f".{self.path.name}.tmp-")

    def describe(self) -> list[dict[str, Any]]:
        self.refresh()
        with self._lock:
            return [{"name": n, "current": k.current, "versions": sorted(k.versions), "default": n == self.default}
                    for n, k in sorted(self._keys.items())]
