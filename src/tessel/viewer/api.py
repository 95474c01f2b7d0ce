"""The viewer's JSON API under /viewer/api/: sign-in, datastores, pathology bookmarks.

    POST   /viewer/api/token                                   Basic key id:secret -> a Bearer token
    GET    /viewer/api/datastores                              datastores the caller may search
    GET    /viewer/api/datastores/{id}/studies/{study}/bookmarks[?series=UID]
    POST   /viewer/api/datastores/{id}/studies/{study}/bookmarks
    GET    /viewer/api/datastores/{id}/studies/{study}/bookmarks/{bookmarkId}
    PUT    /viewer/api/datastores/{id}/studies/{study}/bookmarks/{bookmarkId}
    DELETE /viewer/api/datastores/{id}/studies/{study}/bookmarks/{bookmarkId}

Callers authenticate exactly as DICOMweb callers do (Bearer, Basic, SigV4), so
this module uses DICOMweb's authentication and error table rather than a copy
of them. Bookmarks are data of the study: reading them needs the right to read
the study's metadata (GetDICOMStudyMetadata), writing them the right to store
into it (StoreDICOMStudy).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tessel.auth import Principal
from tessel.auth.tokens import parse_ttl
from tessel.catalog.models import DatastoreStatus
from tessel.dicomweb import access
from tessel.dicomweb.errors import error_response
from tessel.errors import Forbidden, InvalidInput, NotFound
from tessel.lifecycle.datastores import get_datastore
from tessel.stores import Stores
from tessel.viewer import bookmarks

PREFIX = "/viewer/api"
_BOOKMARKS = PREFIX + "/datastores/{datastore_id}/studies/{study}/bookmarks"
READ, WRITE = "GetDICOMStudyMetadata", "StoreDICOMStudy"
DEFAULT_TOKEN_TTL = "8h"
MAX_BODY = 64 * 1024

Endpoint = Callable[[Request], Awaitable[Response]]


async def _body(request: Request) -> Any:
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise InvalidInput(f"the body is larger than {MAX_BODY} bytes")
    if not raw.strip():
        return {}
    if "json" not in request.headers.get("content-type", "application/json"):
        raise InvalidInput("the body must be application/json")
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInput(f"the body is not valid JSON: {exc}") from None


def _guarded(what: str, handler: Callable[[Request], Awaitable[Response]]) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except Exception as exc:  # every failure answers with a status and a reason
            return error_response(exc, what)

    endpoint.__name__ = handler.__name__
    return endpoint


async def _authorized(request: Request, action: str) -> tuple[Principal, Stores, str, str]:
    stores: Stores = request.app.state.stores
    datastore_id, study = request.path_params["datastore_id"], request.path_params["study"]
    principal = await access.principal(request)
    # The one decision point (as DICOMweb's): a study the caller may not see reads as absent.
    await run_in_threadpool(access.authorize, request, principal, action, datastore_id, study_uid=study,
                            whole=action == WRITE)
    await run_in_threadpool(get_datastore, stores, datastore_id)
    return principal, stores, datastore_id, study


async def create_token(request: Request) -> Response:
    """Exchange an access key id and secret (HTTP Basic) for a Bearer token: the login page."""
    if access.scheme_of(request) != "basic":
        raise InvalidInput("sign in with HTTP Basic credentials: access key id and secret")
    principal = await access.principal(request)
    body = await _body(request)
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object")
    ttl = body.get("ttl", DEFAULT_TOKEN_TTL)
    if not isinstance(ttl, str):
        raise InvalidInput("ttl is a string such as '8h' or '30m'")
    seconds = parse_ttl(ttl)
    token = request.app.state.dicomweb_tokens.create(principal.access_key_id, seconds)
    return JSONResponse({"token": token, "accessKeyId": principal.access_key_id, "expiresIn": seconds})


async def list_datastores(request: Request) -> Response:
    """Active datastores whose studies the caller may search (the study browser's choice)."""
    stores: Stores = request.app.state.stores
    principal = await access.principal(request)
    found = await run_in_threadpool(stores.catalog.list_datastores, status=DatastoreStatus.ACTIVE.value)
    out = []
    for ds in found:
        try:
            await run_in_threadpool(access.authorize, request, principal, "SearchDICOMStudies", ds.id)
        except (Forbidden, NotFound):  # not this caller's: leave it out of the list
            continue
        out.append({"datastoreId": ds.id, "datastoreName": ds.name})
    return JSONResponse({"datastores": out})


async def list_bookmarks(request: Request) -> Response:
    _, stores, datastore_id, study = await _authorized(request, READ)
    found = await run_in_threadpool(bookmarks.list_bookmarks, stores, datastore_id, study,
                                    request.query_params.get("series"))
    return JSONResponse({"bookmarks": [b.to_json() for b in found]})


async def create_bookmark(request: Request) -> Response:
    principal, stores, datastore_id, study = await _authorized(request, WRITE)
    body = await _body(request)
    made = await run_in_threadpool(bookmarks.create_bookmark, stores, datastore_id, study, body,
                                   principal.access_key_id)
    location = f"{_BOOKMARKS.format(datastore_id=datastore_id, study=study)}/{made.id}"
    return JSONResponse(made.to_json(), status_code=201, headers={"Location": location})


async def get_bookmark(request: Request) -> Response:
    _, stores, datastore_id, study = await _authorized(request, READ)
    found = await run_in_threadpool(bookmarks.get_bookmark, stores, datastore_id, study,
                                    request.path_params["bookmark_id"])
    return JSONResponse(found.to_json())


async def update_bookmark(request: Request) -> Response:
    _, stores, datastore_id, study = await _authorized(request, WRITE)
    body = await _body(request)
    changed = await run_in_threadpool(bookmarks.update_bookmark, stores, datastore_id, study,
                                      request.path_params["bookmark_id"], body)
    return JSONResponse(changed.to_json())


async def delete_bookmark(request: Request) -> Response:
    _, stores, datastore_id, study = await _authorized(request, WRITE)
    await run_in_threadpool(bookmarks.delete_bookmark, stores, datastore_id, study,
                            request.path_params["bookmark_id"])
    return Response(status_code=204)


async def not_found(request: Request) -> Response:
    raise NotFound(f"no viewer API at {request.url.path}")


def build_router() -> APIRouter:
    router = APIRouter()

    def add(path: str, methods: list[str], handler: Callable[[Request], Awaitable[Response]]) -> None:
        router.add_route(path, _guarded(handler.__name__, handler), methods=methods, include_in_schema=False)

    add(PREFIX + "/token", ["POST"], create_token)
    add(PREFIX + "/datastores", ["GET"], list_datastores)
    add(_BOOKMARKS, ["GET"], list_bookmarks)
    add(_BOOKMARKS, ["POST"], create_bookmark)
    add(_BOOKMARKS + "/{bookmark_id}", ["GET"], get_bookmark)
    add(_BOOKMARKS + "/{bookmark_id}", ["PUT"], update_bookmark)
    add(_BOOKMARKS + "/{bookmark_id}", ["DELETE"], delete_bookmark)
    add(PREFIX + "/{rest:path}", ["GET", "POST", "PUT", "DELETE"], not_found)
    return router
