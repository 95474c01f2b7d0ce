"""Authentication (SigV4, Basic) -> Principal, and authorization against a key's policy.

`authenticate` is a FastAPI/Starlette dependency: `Depends(authenticate)` in a
route, or `await authenticate(request)` in a plain endpoint. It needs
`app.state.keys` (a KeyStore), which `create_app` sets.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hmac
import re
from typing import Any, Iterable, Mapping

from starlette.requests import Request

from tessel.auth.keys import AccessKey, Bootstrap, KeyStatus, KeyStore, Principal, bootstrap
from tessel.auth.sigv4 import ReceivedRequest, verify
from tessel.errors import Forbidden, Unauthenticated

__all__ = ["AccessKey", "Bootstrap", "KeyStatus", "KeyStore", "Principal", "allowed", "authenticate",
           "authenticator", "bootstrap", "require", "received_request"]


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


# -- authorization ------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1024)
def _glob(pattern: str) -> re.Pattern[str]:
    # IAM wildcards: * any run, ? one character; everything else literal.
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern),
                      re.DOTALL)


def _as_list(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value or [])


def _matches(statement: Mapping[str, Any], action: str, resource: str) -> bool:
    actions = _as_list(statement.get("Action", []))
    resources = _as_list(statement.get("Resource", "*"))
    return (any(_glob(a.lower()).fullmatch(action.lower()) for a in actions)
            and any(_glob(r).fullmatch(resource) for r in resources))


def allowed(principal: Principal, action: str, resource: str) -> bool:
    """IAM-style evaluation: an explicit Deny wins, then any Allow; nothing matching denies."""
    if principal.policy is None:
        return True
    statements = [s for s in principal.policy.get("Statement", []) if isinstance(s, Mapping)]
    if any(s.get("Effect") == "Deny" and _matches(s, action, resource) for s in statements):
        return False
    return any(s.get("Effect") == "Allow" and _matches(s, action, resource) for s in statements)


def require(principal: Principal, action: str, resource: str) -> None:
    if not allowed(principal, action, resource):
        raise Forbidden(f"User: {principal.name} ({principal.access_key_id}) is not authorized to "
                        f"perform: {action} on resource: {resource}")
