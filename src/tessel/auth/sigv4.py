"""Verify AWS Signature Version 4 on a received request.

The canonical request and the string to sign come from botocore's own signer
(SigV4Auth), given an AWSRequest rebuilt from what arrived: method, raw path,
query, only the headers named in SignedHeaders, the body, and the request's own
X-Amz-Date. Hand-written canonicalisation is where verifiers usually drift from
clients. Only the last step is done here: the HMAC of the string to sign under
the derived signing key, which is cached per (secret, date, region, service) as
the SDKs cache it, since deriving it is four more HMACs on every request (a test
checks the result against botocore's `signature`).
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Callable, Sequence
from urllib.parse import unquote

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tessel.auth.keys import AccessKey, KeyStatus, Principal
from tessel.errors import Unauthenticated

ALGORITHM = "AWS4-HMAC-SHA256"
MAX_SKEW = dt.timedelta(minutes=15)
_AUTH = re.compile(r"AWS4-HMAC-SHA256\s+(?P<fields>.+)", re.DOTALL)
_HEX64 = re.compile(r"[0-9a-f]{64}")
_AMZ_DATE = re.compile(r"\d{8}T\d{6}Z")
TIMESTAMP = "%Y%m%dT%H%M%SZ"


@dataclass(frozen=True, slots=True)
class ReceivedRequest:
    method: str
    raw_path: str                       # as sent, still percent-encoded
    query_string: str                   # raw, without '?'
    headers: Sequence[tuple[str, str]]  # every header as received (names any case)
    body: bytes


@dataclass(frozen=True, slots=True)
class Authorization:
    access_key_id: str
    date: str
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str


class _Signer(SigV4Auth):  # type: ignore[misc]  # botocore ships no type hints
    """botocore's signer, with the payload hash taken literally from x-amz-content-sha256 when
    sent (curl --aws-sigv4 signs that value and sends the raw body), else the SHA-256 of the
    body as received (what botocore's payload() computes, without re-preparing the request)."""

    def __init__(self, credentials: Credentials, service: str, region: str, payload_hash: str):
        super().__init__(credentials, service, region)
        self._payload_hash = payload_hash

    def payload(self, request: AWSRequest) -> str:
        return self._payload_hash


@functools.lru_cache(maxsize=1024)
def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    """kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request")."""
    key = ("AWS4" + secret).encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def _timestamp(amz_date: str) -> dt.datetime:
    if not _AMZ_DATE.fullmatch(amz_date):
        raise ValueError(amz_date)
    return dt.datetime(int(amz_date[0:4]), int(amz_date[4:6]), int(amz_date[6:8]), int(amz_date[9:11]),
                       int(amz_date[11:13]), int(amz_date[13:15]), tzinfo=dt.timezone.utc)


def parse_authorization(value: str) -> Authorization:
    m = _AUTH.fullmatch(value.strip())
    if not m:
        raise Unauthenticated("the Authorization header is not AWS4-HMAC-SHA256")
    fields: dict[str, str] = {}
    for part in m.group("fields").split(","):
        name, _, val = part.strip().partition("=")
        fields[name] = val.strip()
    try:
        credential, signed, signature = fields["Credential"], fields["SignedHeaders"], fields["Signature"]
    except KeyError as missing:
        raise Unauthenticated(f"the Authorization header lacks {missing.args[0]}") from None
    scope = credential.split("/")
    if len(scope) != 5 or scope[4] != "aws4_request":
        raise Unauthenticated("the credential scope is malformed")
    headers = tuple(h for h in signed.lower().split(";") if h)
    if "host" not in headers:
        raise Unauthenticated("the Host header must be signed")
    return Authorization(scope[0], scope[1], scope[2], scope[3], headers, signature.lower())


def _query_pairs(query_string: str) -> list[tuple[str, str]]:
    # Decoded pairs: botocore re-encodes them the SigV4 way, whatever encoding the client chose.
    pairs = []
    for part in query_string.split("&"):
        if part:
            key, _, value = part.partition("=")
            pairs.append((unquote(key), unquote(value)))
    return pairs


def verify(request: ReceivedRequest, lookup: Callable[[str], AccessKey | None], *,
           service: str = "medical-imaging", now: dt.datetime | None = None) -> Principal:
    """The principal whose key signed `request`; Unauthenticated for anything else."""
    headers: dict[str, list[str]] = {}
    for name, value in request.headers:
        headers.setdefault(name.lower(), []).append(value)
    authorization = headers.get("authorization")
    if not authorization:
        raise Unauthenticated("the request is not signed (no Authorization header)")
    auth = parse_authorization(authorization[0])
    if auth.service != service:
        raise Unauthenticated(f"the credential scope names service {auth.service!r}, not {service!r}")
    amz_date = (headers.get("x-amz-date") or [""])[0]
    try:
        signed_at = _timestamp(amz_date)
    except ValueError:
        raise Unauthenticated("X-Amz-Date is missing or not in YYYYMMDD'T'HHMMSS'Z' form") from None
    if amz_date[:8] != auth.date:
        raise Unauthenticated("the credential scope date differs from X-Amz-Date")
    now = now or dt.datetime.now(dt.timezone.utc)
    if abs(now - signed_at) > MAX_SKEW:
        raise Unauthenticated(f"Signature expired: {amz_date} is more than 15 minutes from the "
                              f"server time {now.strftime(TIMESTAMP)}")
    key = lookup(auth.access_key_id)
    if key is None or key.status != KeyStatus.ACTIVE:
        raise Unauthenticated("The security token included in the request is invalid "
                              "(unknown or disabled access key)")
    missing = [h for h in auth.signed_headers if h not in headers]
    if missing:
        raise Unauthenticated(f"signed header {missing[0]!r} is not in the request")

    literal = headers["x-amz-content-sha256"][0] if "x-amz-content-sha256" in headers else None
    if literal is None or _HEX64.fullmatch(literal.lower()):
        payload_hash = hashlib.sha256(request.body).hexdigest()
        # A declared body hash binds the body only if it is the body's hash.
        if literal is not None and not hmac.compare_digest(literal.lower(), payload_hash):
            raise Unauthenticated("x-amz-content-sha256 does not match the request body")
    else:
        payload_hash = literal  # UNSIGNED-PAYLOAD, STREAMING-...: signed as the literal value
    host = headers["host"][0]
    aws_request = AWSRequest(method=request.method.upper(), url=f"http://{host}{request.raw_path}",
                             data=request.body, params=_query_pairs(request.query_string))
    for name in auth.signed_headers:
        for value in headers[name]:
            aws_request.headers[name] = value  # HTTPHeaders appends repeated names
    aws_request.context["timestamp"] = amz_date
    secret = key.secret.reveal()
    signer = _Signer(Credentials(key.access_key_id, secret), auth.service, auth.region,
                     literal if literal is not None else payload_hash)
    string_to_sign = signer.string_to_sign(aws_request, signer.canonical_request(aws_request))
    expected = hmac.new(signing_key(secret, auth.date, auth.region, auth.service), string_to_sign.encode(),
                        hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, auth.signature):
        raise Unauthenticated("The request signature we calculated does not match the signature you "
                              "provided. Check your AWS Secret Access Key and signing method.")
    return Principal.of(key, "sigv4")
