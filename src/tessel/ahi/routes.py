"""The AWS HealthImaging-compatible API: one function per operation, routed from botocore's model.

Each request: authenticate (SigV4) -> parse and check against the model ->
authorize -> call ONE service -> render. Route functions run in the thread
pool and return either a dict of output members or a ready Response (the two
streaming operations).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from fastapi import APIRouter, FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response

from tessel import documents, retrieve
from tessel.ahi import shapes
from tessel.ahi.access import AccessLog
from tessel.ahi.errors import NotAcceptable, error_response, new_request_id, response_for
from tessel.ahi.protocol import Operation, operations, parse_request
from tessel.ahi.throttle import RateLimiter
from tessel.ahi.validation import ValidationError
from tessel.audit import Event, event_of
from tessel.auth import ALL, Access, ImageSetScope, Principal, Resource, authenticate, source_address
from tessel.catalog.models import DatastoreStatus, JobStatus, LosslessStorageFormat
from tessel.catalog.search import search_image_sets as search_catalog
from tessel.config import Settings
from tessel.errors import InvalidInput, NotFound, QuotaExceeded, Unavailable, Unsupported
from tessel.ingest import jobs
from tessel.ingest.locations import check_under_roots, parse_location
from tessel.ingest.s3 import S3Location
from tessel.lane import Route
from tessel.lifecycle import datastores, imagesets
from tessel.stores import Stores

DEFAULT_PAGE = 50
MAX_TAGS = 50                 # per resource (AHI)
MAX_UPDATE_PAYLOAD = 10 * 1024  # bytes of each DICOMUpdates document (AHI's quota; the model allows 30000)
MAX_FRAME_BODY = 4096  # GetImageFrame bodies the frame lane takes ({"imageFrameId": ...}); larger: the full stack


@dataclass(frozen=True, slots=True)
class Context:
    stores: Stores
    principal: Principal
    jobs: Any  # the app's JobRunner: submit() wakes it
    accept: str | None = None  # the request's Accept header (GetImageFrame answers 406 if it excludes the frame)
    access: AccessLog | None = None  # where reads and writes of image sets are remembered (lastAccessedAt)
    authz: Access | None = None  # the one authorization decision (tessel.auth.access)
    source: str | None = None
    scope: ImageSetScope = ALL  # SearchImageSets: the image sets the principal may see

    def accessed(self, image_set_id: str) -> None:
        if self.access is not None:
            self.access.record(image_set_id)

    @property
    def settings(self) -> Settings:
        return self.stores.settings


Params = dict[str, Any]


def _blob(data: bytes, media_type: str, **headers: str) -> Response:
    # Sent as is: Content-Length is the size on the wire (botocore checks it), nothing re-encodes it.
    return Response(data, media_type=media_type, headers=headers)


def _limit(p: Params) -> int:
    return int(p.get("maxResults") or DEFAULT_PAGE)


# -- datastores ---------------------------------------------------------------------------------

def create_datastore(ctx: Context, p: Params) -> Params:
    token = p["clientToken"]
    tags = p.get("tags") or {}
    if len(tags) > MAX_TAGS:
        raise ValidationError("tags", f"a resource can have at most {MAX_TAGS} tags")
    quota = ctx.settings.max_datastores
    if ctx.stores.catalog.find_datastore(client_token=token) is None:
        live = [d for d in ctx.stores.catalog.list_datastores(limit=quota + 1000)
                if d.status != DatastoreStatus.DELETED]
        if len(live) >= quota:
            raise QuotaExceeded(f"the quota of {quota} datastores is reached (TESSEL_MAX_DATASTORES); "
                                f"delete one first")
    ds = datastores.create_datastore(
        ctx.stores, p.get("datastoreName") or f"datastore-{token}"[:256], client_token=token,
        lossless_storage_format=LosslessStorageFormat(p.get("losslessStorageFormat", "HTJ2K")),
        kms_key_arn=p.get("kmsKeyArn"), lambda_authorizer_arn=p.get("lambdaAuthorizerArn"), tags=tags)
    return {"datastoreId": ds.id, "datastoreStatus": ds.status.value}


def get_datastore(ctx: Context, p: Params) -> Params:
    ds = datastores.get_datastore(ctx.stores, p["datastoreId"])
    return {"datastoreProperties": shapes.datastore_properties(ctx.settings, ds)}


def list_datastores(ctx: Context, p: Params) -> Params:
    status, limit = p.get("datastoreStatus"), _limit(p)
    after = shapes.decode_token("ListDatastores", p.get("nextToken"))
    page: list[Any] = []
    cursor = tuple(after) if after else None
    # Deleted datastores are listed only when asked for; filtering may take several reads.
    while len(page) <= limit:
        rows = ctx.stores.catalog.list_datastores(status=status, after=cursor, limit=limit + 1)
        assert ctx.authz is not None
        visible = ctx.authz.datastores(ctx.principal, [d.id for d in rows], source=ctx.source)
        page.extend(d for d in rows if (status or d.status != DatastoreStatus.DELETED) and d.id in visible)
        if len(rows) < limit + 1:
            break
        cursor = (rows[-1].created_at, rows[-1].id)
    out: Params = {"datastoreSummaries": [shapes.datastore_summary(ctx.settings, d) for d in page[:limit]]}
    if len(page) > limit:
        last = page[limit - 1]
        out["nextToken"] = shapes.encode_token("ListDatastores", [last.created_at, last.id])
    return out


def delete_datastore(ctx: Context, p: Params) -> Params:
    ds = datastores.delete_datastore(ctx.stores, p["datastoreId"])
    return {"datastoreId": ds.id, "datastoreStatus": ds.status.value}


# -- import jobs --------------------------------------------------------------------------------

def _check_location(ctx: Context, uri: str, field: str, *, must_exist: bool) -> None:
    try:
        location = parse_location(uri, ctx.settings)
        check_under_roots(location, ctx.settings.resolved_import_roots, field)  # file:// only
        if must_exist and not location.exists():
            raise InvalidInput(f"{field} {uri} does not exist")
    except ValidationError:
        raise
    except InvalidInput as exc:
        raise ValidationError(field, f"Value at '{field}' failed to satisfy constraint: {exc.message}") from None


def _file_uri(uri: str) -> str:
    # file:/path (what the AWS CLI lets through: it reads file://... arguments as local files)
    # is file:///path.
    return "file://" + uri[len("file:"):] if uri.startswith("file:/") and not uri.startswith("file://") else uri


def _check_owner(ctx: Context, uri: str, account_id: str) -> None:
    """inputOwnerAccountId: S3 itself refuses a bucket another account owns (ExpectedBucketOwner)."""
    from botocore.exceptions import BotoCoreError, ClientError

    location = parse_location(uri, ctx.settings)
    if not isinstance(location, S3Location):
        raise ValidationError("inputOwnerAccountId", "Value at 'inputOwnerAccountId' failed to satisfy "
                              "constraint: it names the owner of an s3:// input bucket; inputS3Uri is not s3://")
    try:
        location.client.head_bucket(Bucket=location.bucket, ExpectedBucketOwner=account_id)
    except ClientError as exc:
        raise ValidationError("inputOwnerAccountId", f"Value '{account_id}' at 'inputOwnerAccountId' failed to "
                              f"satisfy constraint: bucket {location.bucket} is not owned by that account "
                              f"({exc.response.get('Error', {}).get('Code', 'refused')})") from None
    except BotoCoreError as exc:
        raise Unavailable(f"cannot reach the S3 endpoint to check the owner of {location.bucket}: {exc}") from None


def start_dicom_import_job(ctx: Context, p: Params) -> Params:
    ds = datastores.active_datastore(ctx.stores, p["datastoreId"])
    if p.get("importConfiguration"):
        # Which JSON attributes AHI merges into which files is not documented; refusing is honest.
        raise Unsupported("1 validation error detected: Value at 'importConfiguration' failed to satisfy "
                          "constraint: dicomJsonMetadataImportConfiguration is not supported by tessel; import "
                          "the DICOM files, then apply the JSON metadata with UpdateImageSetMetadata")
    source, output = _file_uri(p["inputS3Uri"]), _file_uri(p["outputS3Uri"])
    _check_location(ctx, source, "inputS3Uri", must_exist=True)
    _check_location(ctx, output, "outputS3Uri", must_exist=False)
    owner = p.get("inputOwnerAccountId")
    if owner:
        _check_owner(ctx, source, owner)
    token = p["clientToken"]
    quota = ctx.settings.max_import_jobs
    if ctx.stores.catalog.find_job_by_token(ds.id, token) is None:
        running = ctx.stores.catalog.list_jobs(
            ds.id, statuses=[JobStatus.SUBMITTED.value, JobStatus.IN_PROGRESS.value], limit=quota)
        if len(running) >= quota:
            raise QuotaExceeded(f"datastore {ds.id} already has {quota} unfinished import jobs "
                                f"(TESSEL_MAX_IMPORT_JOBS); start this one when one has ended")
    job = jobs.start_import_job(ctx.stores, ds.id, source, output, name=p.get("jobName"),
                                client_token=token, data_access_role_arn=p["dataAccessRoleArn"],
                                input_owner_account_id=owner)
    if job.status in (JobStatus.SUBMITTED, JobStatus.IN_PROGRESS):
        ctx.jobs.submit()
    return {"datastoreId": job.datastore_id, "jobId": job.id, "jobStatus": job.status.value,
            "submittedAt": job.submitted_at}


def _job(ctx: Context, datastore_id: str, job_id: str) -> Any:
    job = ctx.stores.catalog.get_job(datastore_id, job_id)
    if job is None:
        raise NotFound(f"import job {job_id} does not exist in datastore {datastore_id}")
    return job


def get_dicom_import_job(ctx: Context, p: Params) -> Params:
    return {"jobProperties": shapes.job_properties(_job(ctx, p["datastoreId"], p["jobId"]))}


def list_dicom_import_jobs(ctx: Context, p: Params) -> Params:
    ds = datastores.get_datastore(ctx.stores, p["datastoreId"])
    limit = _limit(p)
    after = shapes.decode_token("ListDICOMImportJobs", p.get("nextToken"))
    rows = ctx.stores.catalog.list_jobs(ds.id, status=p.get("jobStatus"),
                                        after=tuple(after) if after else None, limit=limit + 1)
    out: Params = {"jobSummaries": [shapes.job_summary(j) for j in rows[:limit]]}
    if len(rows) > limit:
        last = rows[limit - 1]
        out["nextToken"] = shapes.encode_token("ListDICOMImportJobs", [last.submitted_at, last.id])
    return out


# -- image sets ---------------------------------------------------------------------------------

def _version(p: Params) -> int | None:
    return int(p["versionId"]) if p.get("versionId") is not None else None


def search_image_sets(ctx: Context, p: Params) -> Params:
    ds = datastores.get_datastore(ctx.stores, p["datastoreId"])
    criteria = shapes.search_criteria(p.get("searchCriteria"))
    cursor = shapes.decode_token("SearchImageSets", p.get("nextToken"))
    page = search_catalog(ctx.stores.catalog, ds.id, criteria, limit=_limit(p), cursor=cursor,
                          visible=None if ctx.scope.everything else ctx.scope.visible)
    out: Params = {"imageSetsMetadataSummaries": [shapes.search_summary(s) for s in page.image_sets]}
    if (p.get("searchCriteria") or {}).get("sort"):
        out["sort"] = p["searchCriteria"]["sort"]
    if page.next_cursor:
        out["nextToken"] = shapes.encode_token("SearchImageSets", page.next_cursor)
    return out


def get_image_set(ctx: Context, p: Params) -> Params:
    image_set, version = imagesets.get_image_set_version(ctx.stores, p["datastoreId"], p["imageSetId"],
                                                         _version(p))
    return shapes.image_set_properties(ctx.settings, image_set, version)


def get_image_set_metadata(ctx: Context, p: Params) -> Response:
    version = _version(p)
    if version == 0:  # versions start at 1 (and retrieve reads 0 as "latest")
        raise NotFound(f"image set {p['imageSetId']} has no version 0")
    blob = retrieve.get_metadata_blob(ctx.stores, p["datastoreId"], p["imageSetId"], version)
    ctx.accessed(p["imageSetId"])
    return _blob(blob, "application/json", **{"Content-Encoding": "gzip"})


def get_image_frame(ctx: Context, p: Params) -> Response:
    frame = retrieve.get_image_frame(ctx.stores, p["datastoreId"], p["imageSetId"],
                                     p["imageFrameInformation"]["imageFrameId"])
    media_type = shapes.frame_media_type(frame.transfer_syntax_uid, frame.media_type)
    if ctx.accept and not shapes.accepts(ctx.accept, media_type):
        raise NotAcceptable(f"image frame {p['imageFrameInformation']['imageFrameId']} is stored as "
                            f"{media_type}, which the Accept header ({ctx.accept}) excludes; GetImageFrame "
                            f"returns the stored bytes only")
    ctx.accessed(p["imageSetId"])
    return _blob(frame.data, media_type)


def list_image_set_versions(ctx: Context, p: Params) -> Params:
    limit = _limit(p)
    before = shapes.decode_token("ListImageSetVersions", p.get("nextToken"))
    if before is not None and not isinstance(before, int):
        raise ValidationError("nextToken", "the pagination token is invalid")
    versions = imagesets.list_image_set_versions(ctx.stores, p["datastoreId"], p["imageSetId"],
                                                 limit=limit + 1, before_version=before)
    out: Params = {"imageSetPropertiesList": [shapes.version_properties(v) for v in versions[:limit]]}
    if len(versions) > limit:
        out["nextToken"] = shapes.encode_token("ListImageSetVersions", versions[limit - 1].version_id)
    return out


def update_image_set_metadata(ctx: Context, p: Params) -> Params:
    updates = p["updateImageSetMetadataUpdates"]  # a union: the model check left exactly one member
    where = "updateImageSetMetadataUpdates.DICOMUpdates"
    updatable = removable = None
    revert = None
    if "DICOMUpdates" in updates:
        d = updates["DICOMUpdates"]
        for name, blob in d.items():
            if len(blob) > MAX_UPDATE_PAYLOAD:
                raise QuotaExceeded(f"{name} is {len(blob)} bytes; UpdateImageSetMetadata takes at most "
                                    f"{MAX_UPDATE_PAYLOAD} bytes per document (split the update)")
        if "updatableAttributes" in d:
            updatable = shapes.json_document(d["updatableAttributes"], f"{where}.updatableAttributes")
        if "removableAttributes" in d:
            removable = shapes.json_document(d["removableAttributes"], f"{where}.removableAttributes")
        if updatable is None and removable is None:
            raise ValidationError(where, f"Value at '{where}' failed to satisfy constraint: "
                                         f"updatableAttributes or removableAttributes must be set")
    else:
        revert = int(updates["revertToVersionId"])
    image_set = imagesets.update_image_set_metadata(
        ctx.stores, p["datastoreId"], p["imageSetId"], latest_version_id=int(p["latestVersionId"]),
        updatable=updatable, removable=removable, revert_to_version_id=revert,
        force=bool(p.get("force")), include_study_image_sets=bool(p.get("includeStudyImageSets")))
    ctx.accessed(image_set.id)
    return shapes.update_result(image_set)


def copy_image_set(ctx: Context, p: Params) -> Params:
    info = p["copyImageSetInformation"]
    source, destination = info["sourceImageSet"], info.get("destinationImageSet")
    copiable = None
    if "DICOMCopies" in source:
        copiable = shapes.json_document(source["DICOMCopies"]["copiableAttributes"],
                                        "copyImageSetInformation.sourceImageSet.DICOMCopies.copiableAttributes")
    src, dst = imagesets.copy_image_set(
        ctx.stores, p["datastoreId"], p["sourceImageSetId"],
        source_latest_version=int(source["latestVersionId"]), copiable=copiable,
        destination_image_set_id=destination["imageSetId"] if destination else None,
        destination_latest_version=int(destination["latestVersionId"]) if destination else None,
        force=bool(p.get("force")), promote_to_primary=bool(p.get("promoteToPrimary")))
    ctx.accessed(src.id)
    ctx.accessed(dst.id)
    return {"datastoreId": p["datastoreId"],
            "sourceImageSetProperties": shapes.copy_properties(ctx.settings, src),
            "destinationImageSetProperties": shapes.copy_properties(ctx.settings, dst)}


def delete_image_set(ctx: Context, p: Params) -> Params:
    return shapes.delete_result(imagesets.delete_image_set(ctx.stores, p["datastoreId"], p["imageSetId"]))


# -- tags ---------------------------------------------------------------------------------------

def _tagged_resource(ctx: Context, arn: str) -> str:
    datastore_id, image_set_id = shapes.parse_arn(ctx.settings, arn)
    datastores.get_datastore(ctx.stores, datastore_id)
    if image_set_id is not None:
        retrieve.get_image_set(ctx.stores, datastore_id, image_set_id)
    return arn


def tag_resource(ctx: Context, p: Params) -> Params:
    arn = _tagged_resource(ctx, p["resourceArn"])
    current = ctx.stores.catalog.get_tags(arn)
    if len(set(current) | set(p["tags"])) > MAX_TAGS:
        raise ValidationError("tags", f"a resource can have at most {MAX_TAGS} tags")
    with ctx.stores.catalog.write() as conn:
        ctx.stores.catalog.set_tags(conn, arn, p["tags"])
    return {}


def untag_resource(ctx: Context, p: Params) -> Params:
    arn = _tagged_resource(ctx, p["resourceArn"])
    if p["tagKeys"]:
        with ctx.stores.catalog.write() as conn:
            ctx.stores.catalog.remove_tags(conn, arn, p["tagKeys"])
    return {}


def list_tags_for_resource(ctx: Context, p: Params) -> Params:
    return {"tags": ctx.stores.catalog.get_tags(_tagged_resource(ctx, p["resourceArn"]))}


# -- routing ------------------------------------------------------------------------------------

def _resource(settings: Settings, p: Params) -> Resource:
    """What an operation acts on, for the principal's policy."""
    if "resourceArn" in p:
        return Resource(*shapes.parse_arn(settings, str(p["resourceArn"])))
    if "datastoreId" not in p:
        return Resource()  # the account: ListDatastores, CreateDatastore
    return Resource(p["datastoreId"], p.get("imageSetId") or p.get("sourceImageSetId"))


def _authorize(access: Access, principal: Principal, op: Operation, p: Params, settings: Settings,
               source: str | None, event: Event | None) -> ImageSetScope:
    """One authorization per operation (two for a copy into an existing image set)."""
    action = f"medical-imaging:{op.name}"
    resource = _resource(settings, p)
    if op.name == "SearchImageSets":
        return access.authorize_within(principal, action, resource, source=source, event=event)
    access.authorize(principal, action, resource, source=source, event=event)
    destination = (p.get("copyImageSetInformation") or {}).get("destinationImageSet")
    if op.name == "CopyImageSet" and destination:
        access.authorize(principal, action, Resource(p["datastoreId"], destination["imageSetId"]), source=source)
    return ALL


def _endpoint(op: Operation, function: Callable[[Context, Params], Any], *,
              inline: bool = False) -> Callable[[Request], Any]:
    """`inline`: authorize and run the operation on the event loop (short blocking work only: see frame_route)."""

    async def endpoint(request: Request) -> Response:
        request_id = new_request_id()
        event = event_of(request)
        if event is not None:
            event.action = f"medical-imaging:{op.name}"  # also when authentication fails
        try:
            principal = await authenticate(request)
            limiter: RateLimiter | None = request.app.state.ahi_rate_limiter
            if limiter is not None:
                limiter.take(principal.access_key_id, op.name)
            raw_path = (request.scope.get("raw_path") or request.scope["path"].encode()).decode("latin-1")
            params = parse_request(op, raw_path=raw_path, path_params=request.path_params,
                                   query=request.query_params.multi_items(), body=await request.body())
            stores: Stores = request.app.state.stores
            authz: Access = request.app.state.access
            source = source_address(request)
            jobs_runner, accept, access_log = request.app.state.jobs, request.headers.get("accept"), \
                request.app.state.ahi_access

            def call() -> Any:  # authorization may read tags: it runs in the pool with the operation
                scope = _authorize(authz, principal, op, params, stores.settings, source, event)
                return function(Context(stores, principal, jobs_runner, accept, access_log, authz, source, scope),
                                params)

            result = call() if inline else await run_in_threadpool(call)
        except Exception as exc:  # every failure answers in botocore's error shape
            return response_for(exc, request_id, op.name)
        if isinstance(result, Response):
            result.headers["x-amzn-RequestId"] = request_id
            return result
        # documents.dumps (orjson): a SearchImageSets page of 50 summaries took 1 ms with the json module, 0.1 ms
        return Response(documents.dumps(result), media_type="application/json",
                        headers={"x-amzn-RequestId": request_id})

    endpoint.__name__ = op.function
    return endpoint


def build_router() -> APIRouter:
    router = APIRouter()
    functions = globals()
    for op in operations():
        router.add_route(op.route, _endpoint(op, functions[op.function]), methods=[op.method],
                         name=op.name, include_in_schema=False)
    return router


def frame_route(*, inline: bool = False) -> Route:
    """GetImageFrame on lane.Lane's short path: the router's endpoint for it, on the path the router
    matches. `inline` when the catalog and the blobs are local (SQLite, files): the one lookup and
    the one read then take less than the thread pool hop they would save."""
    op = next(o for o in operations() if o.name == "GetImageFrame")
    return Route(op.method, op.raw_path, _endpoint(op, get_image_frame, inline=inline), max_body=MAX_FRAME_BODY)


async def _http_error(request: Request, exc: Exception) -> Response:
    """Routing misses (unknown path, wrong method) in botocore's error shape."""
    assert isinstance(exc, StarletteHTTPException)
    code = {404: "UnknownOperationException", 405: "UnknownOperationException"}.get(exc.status_code,
                                                                                     "ValidationException")
    message = f"no operation {request.method} {request.url.path}" if exc.status_code in (404, 405) else str(
        exc.detail)
    return error_response(code, exc.status_code, message)


async def _unexpected(request: Request, exc: Exception) -> Response:
    """Anything that escaped every handler (Starlette logs it too) still answers in botocore's shape."""
    return response_for(exc, new_request_id(), f"{request.method} {request.url.path}")


def install(app: FastAPI) -> None:
    """Mount the API on the root of `app` (needs app.state.stores, .keys and .jobs)."""
    rate = app.state.stores.settings.rate_limit
    app.state.ahi_rate_limiter = RateLimiter(rate) if rate else None
    app.state.ahi_access = AccessLog(app.state.stores.catalog)  # started and stopped by the app's lifespan
    app.include_router(build_router())
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
