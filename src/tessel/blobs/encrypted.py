"""A blob store wrapper that encrypts every blob with its datastore's data key (AES-256-GCM).

Stored form: b"TSE1" + 12-byte nonce + ciphertext + 16-byte tag. The associated data is
the blob's key, so a blob copied or moved to another key (another frame, another
datastore) fails authentication like an altered one: it is reported, never served.
Datastores made with encryption at rest turned off (their data key is `none`) are
passed through. Any store (file, S3, memory) can be wrapped.
"""

from __future__ import annotations

import logging
import secrets
from typing import Callable, Iterator

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tessel.blobs.models import BlobStore
from tessel.errors import Corrupted, InvalidInput

log = logging.getLogger("tessel.blobs")

MAGIC = b"TSE1"
NONCE = 12
OVERHEAD = len(MAGIC) + NONCE + 16
_AAD = b"tessel-blob\x00"


def datastore_of(key: str) -> str:
    """`ds/<datastore id>/...` -> the datastore id (every blob key names one: blobs/keys.py)."""
    parts = key.split("/", 2)
    if len(parts) < 3 or parts[0] != "ds" or not parts[1]:
        raise InvalidInput(f"blob key {key!r} names no datastore")
    return parts[1]


class EncryptedBlobStore:
    def __init__(self, inner: BlobStore, cipher_for: Callable[[str], AESGCM | None]) -> None:
        self.inner = inner
        self.cipher_for = cipher_for  # datastore id -> its data key's cipher (None: not encrypted)

    def __repr__(self) -> str:
        return f"EncryptedBlobStore({self.inner!r})"

    def put(self, key: str, data: bytes) -> None:
        cipher = self.cipher_for(datastore_of(key))
        if cipher is None:
            self.inner.put(key, data)
            return
        nonce = secrets.token_bytes(NONCE)
        self.inner.put(key, MAGIC + nonce + cipher.encrypt(nonce, bytes(data), _AAD + key.encode()))

    def get(self, key: str) -> bytes:
        cipher = self.cipher_for(datastore_of(key))
        stored = self.inner.get(key)
        if cipher is None:
            return stored
        if not stored.startswith(MAGIC) or len(stored) < OVERHEAD:
            raise self._corrupted(key)
        try:
            return cipher.decrypt(stored[4:4 + NONCE], stored[4 + NONCE:], _AAD + key.encode())
        except InvalidTag:
            raise self._corrupted(key) from None

    @staticmethod
    def _corrupted(key: str) -> Corrupted:
        log.error("blob %s failed its integrity check (altered or damaged at rest); not served", key)
        return Corrupted(f"stored blob {key} failed its integrity check (altered or damaged at rest); "
                         "it is not served", blob_key=key)

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        # GCM authenticates the whole blob: a range is cut from the verified plaintext.
        return self.get(key)[offset:offset + length]

    def exists(self, key: str) -> bool:
        return self.inner.exists(key)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def list(self, prefix: str) -> Iterator[str]:
        return self.inner.list(prefix)

    def sync(self) -> None:
        self.inner.sync()
