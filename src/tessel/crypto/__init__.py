"""Encryption at rest: master keys (keyring file) wrap data keys (catalog) that encrypt data.

    ring = Keyring.open(path)                      # generated on first use
    keys = DataKeys(catalog, ring)                 # named data keys, made on first use
    sealed = seal(keys.aead("access-keys"), b"secret", aad=b"TSL...")
"""

from __future__ import annotations

import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tessel.crypto.datakeys import ACCESS_KEYS, AUDIT_CHAIN, DataKeys, datastore_key_name
from tessel.crypto.master import Keyring, key_name_from_arn
from tessel.errors import Corrupted

__all__ = ["ACCESS_KEYS", "AUDIT_CHAIN", "DataKeys", "Keyring", "datastore_key_name", "key_name_from_arn",
           "open_sealed", "seal"]

NONCE = 12


def seal(cipher: AESGCM, plaintext: bytes, aad: bytes) -> bytes:
    """nonce + AES-256-GCM ciphertext and tag, bound to `aad`."""
    nonce = secrets.token_bytes(NONCE)
    return nonce + cipher.encrypt(nonce, plaintext, aad)


def open_sealed(cipher: AESGCM, sealed: bytes, aad: bytes, what: str) -> bytes:
    """The plaintext of `seal`; Corrupted (naming `what`) if it was altered or moved."""
    try:
        return cipher.decrypt(sealed[:NONCE], sealed[NONCE:], aad)
    except InvalidTag:
        raise Corrupted(f"{what} failed its integrity check (altered or damaged at rest)") from None
