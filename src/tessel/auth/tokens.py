"""Bearer tokens for DICOMweb and the viewer: HS256 JWTs naming an access key, with an expiry.

The signing secret is 32 random bytes in the catalog (table `secrets`), made by
whichever of `tessel token create` and `tessel serve` needs it first, so every
server of a deployment verifies the tokens any of them (or the CLI) issued. A token carries the key id (`sub`); it authenticates as that
key for as long as the key is Active and the token has not expired, so
disabling a key revokes its tokens.
"""

from __future__ import annotations

import re
import secrets
import time
from pathlib import Path

import jwt

from tessel.auth.keys import KeyStatus, KeyStore, Principal
from tessel.catalog import Catalog
from tessel.errors import InvalidInput, Unauthenticated

ALGORITHM = "HS256"
ISSUER = "tessel"
SECRET_FILE = "token-secret"  # where versions before 0.2 kept it
SECRET_NAME = "token-signing-key"
MAX_TTL = 366 * 86400
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_ttl(text: str) -> int:
    """Seconds in '90', '30s', '15m', '1h' or '7d'.

    >>> parse_ttl("1h"), parse_ttl("90"), parse_ttl("2d")
    (3600, 90, 172800)
    """
    m = re.fullmatch(r"\s*(\d+)\s*([smhd]?)\s*", text.lower())
    if not m:
        raise InvalidInput(f"a TTL is a number with an optional unit s, m, h or d (not {text!r})")
    seconds = int(m.group(1)) * _UNITS[m.group(2) or "s"]
    if not 0 < seconds <= MAX_TTL:
        raise InvalidInput(f"a TTL must be between 1 second and {MAX_TTL // 86400} days")
    return seconds


def load_secret(catalog: Catalog, data_dir: Path | None = None) -> bytes:
    """The signing secret, kept in the catalog so that every server sharing it verifies every
    token; made on first use. A secret an older version kept in the data directory is adopted."""

    def make() -> str:
        legacy = data_dir / SECRET_FILE if data_dir is not None else None
        if legacy is not None and legacy.is_file():
            return legacy.read_text().strip()
        return secrets.token_hex(32)

    return bytes.fromhex(catalog.secret(SECRET_NAME, make))


class TokenSigner:
    def __init__(self, catalog: Catalog, data_dir: Path | None = None) -> None:
        self.catalog = catalog
        self.data_dir = data_dir
        self._secret: bytes | None = None

    @property
    def secret(self) -> bytes:
        if self._secret is None:
            self._secret = load_secret(self.catalog, self.data_dir)
        return self._secret

    def create(self, access_key_id: str, ttl_seconds: int, *, now: float | None = None) -> str:
        issued = int(now if now is not None else time.time())
        claims = {"iss": ISSUER, "sub": access_key_id, "iat": issued, "exp": issued + ttl_seconds,
                  "jti": secrets.token_hex(8)}
        return jwt.encode(claims, self.secret, algorithm=ALGORITHM)

    def key_id(self, token: str) -> str:
        """The access key id a valid, unexpired token names; Unauthenticated otherwise."""
        try:
            claims = jwt.decode(token, self.secret, algorithms=[ALGORITHM], issuer=ISSUER,
                                options={"require": ["exp", "sub", "iss"]})
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("the bearer token has expired") from None
        except jwt.InvalidTokenError:
            raise Unauthenticated("the bearer token is invalid") from None
        return str(claims["sub"])

    def principal(self, token: str, keys: KeyStore) -> Principal:
        key = keys.get(self.key_id(token))
        if key is None or key.status != KeyStatus.ACTIVE:
            raise Unauthenticated("the bearer token's access key is unknown or disabled")
        return Principal.of(key, "bearer")
