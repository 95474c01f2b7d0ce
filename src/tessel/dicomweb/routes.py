"""DICOMweb routes under /datastore/{datastoreId}/: QIDO-RS, WADO-RS, STOW-RS.

Each request: authenticate -> authorize the AHI action on the datastore ->
call the service (catalog query, retrieve, ingest) in the thread pool ->
render. Endpoints are plain Starlette ones (no FastAPI parameter machinery):
frames are the hot path. `?imageSetId=` reads a given (possibly non-primary)
image set at the instance, series and study retrieval levels.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from tessel import codecs
from tessel.audit import event_of
from tessel.auth import ALL, ImageSetScope
from tessel.auth.access import visible_studies
from tessel.dicomweb import access, multipart, qido, render, stow, wado
from tessel.dicomweb import json as dicom_json
from tessel.dicomweb.errors import error_response
from tessel.errors import InvalidInput, NotFound, Unsupported
from tessel.lane import Route
from tessel.lifecycle.datastores import get_datastore
from tessel.retrieve import instances, part10
from tessel.retrieve.instances import InstanceRef
from tessel.stores import Stores

PREFIX = "/datastore/{datastore_id}"
FRAMES_ACTION = "GetDICOMInstanceFrames"
_STUDY = "/studies/{study}"
_SERIES = _STUDY + "/series/{series}"
_INSTANCE = _SERIES + "/instances/{sop}"


@dataclass(frozen=True, slots=True)
class Ctx:
    stores: Stores
    datastore_id: str
    request: Request
    path: dict[str, str]
    query: list[tuple[str, str]]
    accept: str | None
    scope: ImageSetScope = ALL  # the image sets the caller may read here

    @property
    def base_url(self) -> str:
        return _base_url(self.request, self.datastore_id)

    def param(self, name: str) -> str | None:
        lower = name.lower()
        return next((v for k, v in self.query if k.lower() == lower), None)

    @property
    def image_set_id(self) -> str | None:
        return self.param("imageSetId") or None


@dataclass(frozen=True, slots=True)
class Later:
    """What is left of a handler's work when it is long (decoding): an inline endpoint runs it in
    the thread pool, off the event loop."""

    finish: Callable[[], Response]


Handler = Callable[[Ctx], Response | Later]


def _locate(ctx: Ctx, study: str, series: str | None = None, sop: str | None = None) -> list[InstanceRef]:
    """part10.locate, left to the image sets the caller may read (else: as if absent)."""
    refs = part10.locate(ctx.stores.catalog, ctx.datastore_id, study, series, sop, image_set_id=ctx.image_set_id)
    if ctx.scope.everything:
        return refs
    shown = ctx.scope.visible(r.image_set_id for r in refs)
    refs = [r for r in refs if r.image_set_id in shown]
    if not refs:
        what = f"instance {sop}" if sop else f"series {series}" if series else f"study {study}"
        raise NotFound(f"{what} is not in datastore {ctx.datastore_id}", study_instance_uid=study)
    return refs


def _check_frames(ctx: Ctx, stored: instances.StoredFrames) -> instances.StoredFrames:
    ref = stored.ref
    if not ctx.scope.everything and ref.image_set_id not in ctx.scope.visible([ref.image_set_id]):
        raise NotFound(f"instance {ref.sop_instance_uid} is not in series {ref.series_instance_uid} of study "
                       f"{ref.study_instance_uid}")
    return stored


def _base_url(request: Request, datastore_id: str) -> str:
    """Where this datastore's DICOMweb lives, for RetrieveURL and BulkDataURI."""
    base = str(request.base_url).rstrip("/")
    host = request.headers.get("host", "")
    server = request.scope.get("server")
    # Some clients (dicomweb-client) send Host without the port; when the host is the address
    # the connection came in on (no proxy in between), the port is that of the socket.
    if server and ":" not in host.rsplit("]", 1)[-1] and host == server[0] and server[1] not in (80, 443):
        base = f"{request.url.scheme}://{host}:{server[1]}"
    return f"{base}/datastore/{datastore_id}"


def _ctx(request: Request) -> Ctx:
    datastore_id = request.path_params["datastore_id"]
    query = request.query_params.multi_items() if request.scope.get("query_string") else []
    return Ctx(request.app.state.stores, datastore_id, request,
               {k: str(v) for k, v in request.path_params.items()}, query, request.headers.get("accept"))


def _endpoint(action: str, handler: Handler, *, inline: bool = False) -> Callable[[Request], Awaitable[Response]]:
    """`inline`: run the handler on the event loop (short blocking work only: see frames_endpoint)."""

    async def endpoint(request: Request) -> Response:
        event = event_of(request)
        if event is not None:
            event.action = f"medical-imaging:{action}"  # also when authentication fails
        try:
            ctx = _ctx(request)
            principal = await access.principal(request)

            def call() -> Response | Later:  # authorization may read tags: in the pool, with the handler
                scope = access.authorize(request, principal, action, ctx.datastore_id,
                                         study_uid=ctx.path.get("study"), series_uid=ctx.path.get("series"))
                result = handler(replace(ctx, scope=scope))
                return result.finish() if isinstance(result, Later) and not inline else result

            if not inline:
                return await run_in_threadpool(call)  # type: ignore[return-value]
            result = call()
            return await run_in_threadpool(result.finish) if isinstance(result, Later) else result
        except Exception as exc:  # every failure answers with a status and a reason
            return error_response(exc, action)

    endpoint.__name__ = handler.__name__
    return endpoint


def _json(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = value if isinstance(value, bytes) else dicom_json.dumps(value)
    return Response(body, status_code=status, media_type="application/dicom+json", headers=headers)


# -- QIDO-RS ----------------------------------------------------------------------------------

def _search(level: str, scope_keys: tuple[str, ...]) -> Handler:
    names = {"study": "StudyInstanceUID", "series": "SeriesInstanceUID"}

    def search(ctx: Ctx) -> Response:
        get_datastore(ctx.stores, ctx.datastore_id)
        params = qido.parse_search(ctx.query)
        scope = {names[k]: ctx.path[k] for k in scope_keys}
        results, more = qido.search(ctx.stores, ctx.datastore_id, level, params, ctx.base_url, scope,
                                    visible_studies(ctx.scope, ctx.stores.catalog, ctx.datastore_id))
        warning = ("The number of results exceeded the maximum supported by the server. Additional results "
                   "can be requested." if more and params.limited else
                   "There are additional results that can be requested." if more else None)
        return _json(results, headers={"Warning": f'299 tessel "{warning}"'} if warning else None)

    search.__name__ = f"search_{level.lower()}"
    return search


# -- WADO-RS: instances, series, studies --------------------------------------------------------

def _retrieve(ctx: Ctx) -> Response:
    study, series, sop = ctx.path["study"], ctx.path.get("series"), ctx.path.get("sop")
    failure: Exception | None = None
    for multi, syntax in wado.instance_syntaxes(ctx.accept):
        part10.check_part10_syntax(syntax)
        if sop is not None:
            try:
                (ref,) = _locate(ctx, study, series, sop)
                doc = instances.load_document(ctx.stores, ctx.datastore_id, ref)
                target = part10.output_transfer_syntax(instances.instance_node(doc, ref), ref, syntax)
                data = part10.part10_from_document(ctx.stores, ctx.datastore_id, doc, ref, transfer_syntax=syntax)
            except Unsupported as exc:
                failure = exc
                continue
            if not multi:
                return Response(data, media_type=f"application/dicom; transfer-syntax={target}")
            boundary = multipart.new_boundary()
            body = multipart.encode(boundary, [(f"application/dicom; transfer-syntax={target}", data)])
            return Response(body, media_type=multipart.related_type(boundary, wado.DICOM))
        parts = part10.study_part10(ctx.stores, ctx.datastore_id, study, series, transfer_syntax=syntax,
                                    image_set_id=ctx.image_set_id, refs=_locate(ctx, study, series))
        try:
            first = next(parts)  # checks every instance, so a 406 comes before the body starts
        except Unsupported as exc:
            failure = exc
            continue
        boundary = multipart.new_boundary()

        def chunks(first: tuple[InstanceRef, str, bytes] = first) -> Iterator[bytes]:
            for _, target, data in _chain(first, parts):
                yield multipart.part_header(boundary, f"application/dicom; transfer-syntax={target}")
                yield data
                yield multipart.CRLF
            yield f"--{boundary}--\r\n".encode()

        return StreamingResponse(chunks(), media_type=multipart.related_type(boundary, wado.DICOM))
    raise failure or Unsupported("no acceptable transfer syntax")


def _chain(first: Any, rest: Iterator[Any]) -> Iterator[Any]:
    yield first
    yield from rest


def _metadata(ctx: Ctx) -> Response:
    refs = _locate(ctx, ctx.path["study"], ctx.path.get("series"), ctx.path.get("sop"))
    return _json(wado.metadata(ctx.stores, ctx.datastore_id, refs, ctx.base_url))


# -- WADO-RS: frames, bulk data, rendered ------------------------------------------------------------

def frame_numbers(text: str) -> list[int]:
    try:
        numbers = [int(n) for n in text.split(",") if n.strip()]
    except ValueError:
        raise InvalidInput(f"frame list {text!r} is not comma-separated frame numbers") from None
    if not numbers or any(n < 1 for n in numbers):
        raise InvalidInput("frame numbers start at 1")
    if len(set(numbers)) != len(numbers):
        raise InvalidInput("the frame list names a frame twice")
    return numbers


def _frames(ctx: Ctx) -> Response | Later:
    numbers = frame_numbers(ctx.path["frames"])
    stored = _check_frames(ctx, instances.get_frames(ctx.stores, ctx.datastore_id, ctx.path["study"],
                                                     ctx.path["series"], ctx.path["sop"], numbers,
                                                     image_set_id=ctx.image_set_id))
    answer = wado.negotiate_frames(stored, ctx.accept)
    if not instances.ready_in(stored, answer.transfer_syntax_uid):
        return Later(lambda: _frames_response(stored, answer))  # decoding takes milliseconds
    return _frames_response(stored, answer)


def _frames_response(stored: instances.StoredFrames, answer: wado.FrameAnswer) -> Response:
    data = list(wado.frame_parts(stored, answer))
    part_type = f"{answer.media_type}; transfer-syntax={answer.transfer_syntax_uid}"
    if not answer.multipart:
        return Response(data[0], media_type=part_type)
    boundary = multipart.new_boundary()
    return Response(multipart.encode(boundary, [(part_type, d) for d in data]),
                    media_type=multipart.related_type(boundary, answer.media_type,
                                                      answer.transfer_syntax_uid))


def frames_endpoint(*, inline: bool = False) -> Callable[[Request], Awaitable[Response]]:
    """The frames endpoint (also served by lane.Lane). `inline` when the catalog and the
    blobs are local (SQLite, files): one lookup and one read then take less than the thread
    pool hop they would save."""
    return _endpoint(FRAMES_ACTION, _frames, inline=inline)


# The frames path as the router matches it for frames_endpoint (build_router), for lane.Lane.
_FRAMES_PATH = re.compile(r"/datastore/(?P<datastore_id>[^/]+)/studies/(?P<study>[^/]+)/series/(?P<series>[^/]+)"
                          r"/instances/(?P<sop>[^/]+)/frames/(?P<frames>[^/]+)")


def frames_route(*, inline: bool = False) -> Route:
    """WADO-RS frames on lane.Lane's short path (a GET: no body)."""
    return Route("GET", _FRAMES_PATH, frames_endpoint(inline=inline))


def _one_ref(ctx: Ctx) -> InstanceRef:
    (ref,) = _locate(ctx, ctx.path["study"], ctx.path["series"], ctx.path["sop"])
    return ref


def _holds_bulk(value: Any, bulk_id: str) -> bool:
    if isinstance(value, dict):
        return value.get("BulkDataID") == bulk_id or any(_holds_bulk(v, bulk_id) for v in value.values())
    if isinstance(value, list):
        return any(_holds_bulk(v, bulk_id) for v in value)
    return False


def _bulkdata(ctx: Ctx) -> Response:
    ref = _one_ref(ctx)
    attrs, _ = instances.instance_attributes(ctx.stores, ctx.datastore_id, ref, primary=ctx.image_set_id is None)
    bulk_id = ctx.path["bulk"]
    if not _holds_bulk(attrs, bulk_id):
        raise NotFound(f"instance {ref.sop_instance_uid} has no bulk data {bulk_id}")
    data = instances.read_bulk(ctx.stores, ctx.datastore_id, bulk_id)
    entries = wado.parse_accept(ctx.accept)
    if any(e.multipart for e in entries[:1]):
        boundary = multipart.new_boundary()
        return Response(multipart.encode(boundary, [(wado.OCTET, data)]),
                        media_type=multipart.related_type(boundary, wado.OCTET))
    return Response(data, media_type=wado.OCTET)


def _render_ref(ctx: Ctx, ref: InstanceRef, frame: int, *, thumbnail: bool) -> Response:
    media = render.choose_media_type(ctx.accept, ctx.param("accept"))
    viewport = render.parse_viewport(ctx.param("viewport")) or ((render.THUMBNAIL,) * 2 if thumbnail else None)
    request_window = render.parse_window(ctx.param("window"))
    quality = int(ctx.param("quality") or 90)
    if not 1 <= quality <= 100:
        raise InvalidInput("quality is between 1 and 100")
    stored = _check_frames(ctx, instances.get_frames(ctx.stores, ctx.datastore_id, ref.study_instance_uid,
                                                     ref.series_instance_uid, ref.sop_instance_uid, [frame],
                                                     image_set_id=ctx.image_set_id))
    info = stored.info
    try:
        pixels = codecs.decode_stored(stored.data[0], info, stored.transfer_syntax_uid)
    except codecs.CodecError as exc:
        raise Unsupported(f"the frame cannot be decoded for rendering: {exc.message}") from exc
    attrs, _ = instances.instance_attributes(ctx.stores, ctx.datastore_id, ref, primary=ctx.image_set_id is None)
    photometric = instances.decoded_photometric(info, stored.transfer_syntax_uid)
    image = render.render(pixels, attrs, photometric, media, request_window=request_window, viewport=viewport,
                          quality=quality)
    return Response(image, media_type=media)


def _rendered(thumbnail: bool) -> Handler:
    def rendered(ctx: Ctx) -> Response:
        if "frames" in ctx.path:
            numbers = frame_numbers(ctx.path["frames"])
            if len(numbers) != 1:
                raise InvalidInput("rendered frames are served one at a time")
            return _render_ref(ctx, _one_ref(ctx), numbers[0], thumbnail=thumbnail)
        if "sop" in ctx.path:
            ref = _one_ref(ctx)
            return _render_ref(ctx, ref, 1, thumbnail=thumbnail)
        refs = [r for r in _locate(ctx, ctx.path["study"], ctx.path.get("series")) if r.number_of_frames > 0]
        if not refs:
            raise NotFound("nothing here has pixel data to render")
        first_series = [r for r in refs if r.series_instance_uid == refs[0].series_instance_uid]
        ref = first_series[len(first_series) // 2]  # the middle image shows the series best
        return _render_ref(ctx, ref, (ref.number_of_frames + 1) // 2 if ref.number_of_frames > 1 else 1,
                           thumbnail=thumbnail)

    rendered.__name__ = "thumbnail" if thumbnail else "rendered"
    return rendered


# -- STOW-RS ----------------------------------------------------------------------------------

async def _stow(request: Request) -> Response:
    study = request.path_params.get("study")
    action = "StoreDICOMStudy" if study else "StoreDICOM"
    event = event_of(request)
    if event is not None:
        event.action = f"medical-imaging:{action}"
    spooled: multipart.SpooledBody | None = None
    try:
        ctx = _ctx(request)
        content_type = request.headers.get("content-type", "")
        chunks = request.stream()
        if access.scheme_of(request) == "sigv4":
            # The signature covers the body: read it all (spooled to disk) before trusting any of it.
            spooled = multipart.SpooledBody()
            await spooled.fill(chunks, stow.MAX_BODY)
            principal = await access.principal(request, body=spooled.buffer())
            chunks = spooled.chunks()
        else:  # refuse unknown callers before reading what may be a gigabyte
            principal = await access.principal(request)
        await run_in_threadpool(access.authorize, request, principal, action, ctx.datastore_id, study_uid=study,
                                whole=True)
        stow.request_kind(content_type)  # 415 before the body is read
        upload = await run_in_threadpool(stow.Upload, ctx.stores, ctx.datastore_id, study,
                                         request.app.state.dicomweb_stow_pool)
        await upload.receive(chunks, content_type)
        status, payload = await upload.finish(ctx.base_url)
        return _json(payload, status)
    except Exception as exc:
        return error_response(exc, action)
    finally:
        if spooled is not None:
            spooled.close()


def build_router() -> APIRouter:
    router = APIRouter()

    def get(path: str, action: str, handler: Handler) -> None:
        router.add_route(PREFIX + path, _endpoint(action, handler), methods=["GET"], include_in_schema=False)

    # Routes are tried in order: the hot ones (frames, metadata) first.
    get(_INSTANCE + "/frames/{frames}", FRAMES_ACTION, _frames)
    get(_SERIES + "/metadata", "GetDICOMSeriesMetadata", _metadata)
    get("/studies", "SearchDICOMStudies", _search("STUDY", ()))
    get("/series", "SearchDICOMSeries", _search("SERIES", ()))
    get("/instances", "SearchDICOMInstances", _search("IMAGE", ()))
    get(_STUDY + "/series", "SearchDICOMSeries", _search("SERIES", ("study",)))
    get(_STUDY + "/instances", "SearchDICOMInstances", _search("IMAGE", ("study",)))
    get(_SERIES + "/instances", "SearchDICOMInstances", _search("IMAGE", ("study", "series")))
    get(_STUDY, "GetDICOMStudy", _retrieve)
    get(_SERIES, "GetDICOMSeries", _retrieve)
    get(_INSTANCE, "GetDICOMInstance", _retrieve)
    get(_STUDY + "/metadata", "GetDICOMStudyMetadata", _metadata)
    get(_INSTANCE + "/metadata", "GetDICOMInstanceMetadata", _metadata)
    get(_INSTANCE + "/bulkdata/{bulk}", "GetDICOMBulkdata", _bulkdata)
    for suffix, thumbnail in (("/rendered", False), ("/thumbnail", True)):
        for path in (_STUDY, _SERIES, _INSTANCE, _INSTANCE + "/frames/{frames}"):
            get(path + suffix, "GetDICOMInstanceFrames", _rendered(thumbnail))
    for path, name in (("/studies", "store"), (_STUDY, "store_study")):
        router.add_route(PREFIX + path, _stow, methods=["POST"], name=f"dicomweb_{name}", include_in_schema=False)
    return router
