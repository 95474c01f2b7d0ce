"""Who is calling DICOMweb: SigV4, HTTP Basic (key id + secret) or a Bearer token.

Anonymous requests are refused (401) unless the server runs with `--no-auth`.
Permissions are the principal's policy, checked by `app.state.access` (tessel.auth.access)
against the AHI DICOMweb action names (`medical-imaging:SearchDICOMStudies`, ...).
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from tessel.audit import event_of
from tessel.auth import ALL, Access, ImageSetScope, KeyStore, Principal, Resource, authenticator, source_address
from tessel.auth.oidc import Bearer
from tessel.auth.sigv4 import ReceivedRequest, verify
from tessel.auth.tokens import TokenSigner
from tessel.errors import Unauthenticated

ANONYMOUS = Principal("anonymous", "anonymous (--no-auth)", None, "none")
_basic = authenticator(("basic",))


def scheme_of(request: Request) -> str:
    """basic | bearer | sigv4 | none: the credentials a request carries."""
    header = request.headers.get("authorization", "")
    word = header.split(" ", 1)[0].lower()
    if word in ("basic", "bearer"):
        return word
    if word.startswith("aws4-"):
        return "sigv4"
    return "none" if not header else word


async def principal(request: Request, *, body: Any = b"") -> Principal:
    """The caller; `body` is what SigV4 signed (bytes, or a memory map of a spooled upload)."""
    scheme = scheme_of(request)
    state = request.app.state
    if scheme == "none":
        if getattr(state, "dicomweb_no_auth", False):
            return ANONYMOUS
        raise Unauthenticated("credentials required: SigV4, HTTP Basic (access key id and secret) "
                              "or a Bearer token from `tessel token create`")
    keys: KeyStore = state.keys
    if scheme == "bearer":
        token = request.headers["authorization"][7:].strip()
        bearer: Bearer | None = getattr(state, "bearer", None)  # tessel's tokens and the OIDC issuer's
        if bearer is None:
            signer: TokenSigner = state.dicomweb_tokens
            return signer.principal(token, keys)
        return await run_in_threadpool(bearer.principal, token)  # may fetch the provider's JWKS
    if scheme == "basic":
        return await _basic(request)  # type: ignore[no-any-return]
    if scheme == "sigv4":
        scope = request.scope
        raw_path = scope.get("raw_path") or scope["path"].encode()
        received = ReceivedRequest(method=request.method, raw_path=raw_path.decode("latin-1"),
                                   query_string=scope.get("query_string", b"").decode("latin-1"),
                                   headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]],
                                   body=body)
        return verify(received, keys.get)
    raise Unauthenticated(f"the {scheme!r} authorization scheme is not accepted")


def authorize(request: Request, principal: Principal, action: str, datastore_id: str, *,
              study_uid: str | None = None, series_uid: str | None = None, whole: bool = False) -> ImageSetScope:
    """The one decision (app.state.access) for a request on a datastore, recorded in the request's
    audit event: the image sets `action` may cover (reads); NotFound (as if absent) or Forbidden if
    none. `whole`: the action needs the datastore itself (writes). Blocking (it may read tags):
    call it from a worker thread (run_in_threadpool)."""
    checker: Access = request.app.state.access
    resource = Resource(datastore_id, study_uid=study_uid, series_uid=series_uid)
    source, event = source_address(request), event_of(request)
    if whole:
        checker.authorize(principal, action, resource, source=source, event=event)
        return ALL
    return checker.authorize_within(principal, action, resource, source=source, event=event)
