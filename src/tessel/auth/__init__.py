"""Authentication (SigV4, Basic, Bearer) -> Principal; authorization in `access` (one place).

`authenticate` is a FastAPI/Starlette dependency: `Depends(authenticate)` in a
route, or `await authenticate(request)` in a plain endpoint. It needs
`app.state.keys` (a KeyStore), which `create_app` sets; `app.state.access` (an
Access) answers allowed(principal, action, resource) for every front end.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from typing import Any, Iterable

from starlette.requests import Request

from tessel.auth.access import ALL, NOTHING, Access, ImageSetScope, Resource, missing
from tessel.auth.keys import AccessKey, Bootstrap, KeyStatus, KeyStore, Principal, bootstrap
from tessel.auth.policy import Policy, parse_policy
from tessel.auth.sigv4 import ReceivedRequest, verify
from tessel.errors import Unauthenticated

__all__ = ["ALL", "NOTHING", "Access", "AccessKey", "Bootstrap", "ImageSetScope", "KeyStatus", "KeyStore",
           "Policy", "Principal", "Resource", "authenticate", "authenticator", "bootstrap", "missing",
           "parse_policy", "received_request", "source_address"]


async def received_request(request: Request) -> ReceivedRequest:
    """What SigV4 needs of a Starlette request (the body is read once and cached by Starlette)."""
    scope = request.scope
    raw_path = scope.get("raw_path") or scope["path"].encode()
    return ReceivedRequest(method=request.method, raw_path=raw_path.decode("latin-1"),
                           query_string=scope.get("query_string", b"").decode("latin-1"),
                           headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]],
                           body=await request.body())


def _basic(value: str, store: KeyStore) -> Principal:
    try:
        key_id, _, secret = base64.b64decode(value, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise Unauthenticated("malformed Basic credentials") from None
    key = store.get(key_id)
    if key is None or key.status != KeyStatus.ACTIVE or not hmac.compare_digest(
            key.secret.reveal().encode(), secret.encode()):
        raise Unauthenticated("unknown access key or wrong secret")
    return Principal.of(key, "basic")


def authenticator(schemes: Iterable[str] = ("sigv4",), service: str = "medical-imaging") -> Any:
    """A dependency accepting the given schemes (sigv4, basic); raises Unauthenticated."""
    accepted = frozenset(schemes)

    async def authenticate(request: Request) -> Principal:
        store: KeyStore = request.app.state.keys
        header = request.headers.get("authorization", "")
        scheme = header.split(" ", 1)[0].lower()
        if scheme == "basic" and "basic" in accepted:
            return _basic(header[6:].strip(), store)
        if "sigv4" in accepted:
            return verify(await received_request(request), store.get, service=service)
        raise Unauthenticated("the request carries no accepted credentials")

    return authenticate


authenticate = authenticator()


def source_address(request: Request) -> str | None:
    """The caller's address (the socket peer; tessel does not trust forwarding headers)."""
    client = request.scope.get("client")
    return str(client[0]) if client else None
