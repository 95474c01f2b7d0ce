"""The one policy decision point: may this principal do this action to this resource?

Every front end (AHI, DICOMweb, DIMSE, viewer) calls `Access.authorize` once per operation,
and `Access.image_sets` / `Access.datastores` where it lists or searches. A refusal on a
resource the principal cannot see at all answers exactly as if the resource did not exist
(NotFound, with the message the service itself would give), so a key scoped to one
datastore learns nothing about another; a refusal on something it can see is Forbidden.

Resources are ARNs: `arn:aws:medical-imaging:REGION:ACCOUNT:datastore/DSID` and
`.../datastore/DSID/imageset/ISID`; account-level operations (ListDatastores,
CreateDatastore) act on `*`. An image set's resource tags are its own over its datastore's.
"""

from __future__ import annotations

import datetime as dt
import functools
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import sqlalchemy as sa

from tessel.auth.keys import Principal
from tessel.auth.policy import Decision, Statement, holds, glob, prefix_reach
from tessel.catalog.sql.tables import tags
from tessel.config import Settings
from tessel.errors import Forbidden, NotFound

SERVICE = "medical-imaging"
# DICOMweb actions (AHI IAM names, spec section 7); the AHI API's are its operation names.
DICOMWEB_ACTIONS = ("GetDICOMInstance", "GetDICOMInstanceMetadata", "GetDICOMInstanceFrames",
                    "GetDICOMSeriesMetadata", "GetDICOMStudyMetadata", "GetDICOMBulkdata", "GetDICOMSeries",
                    "GetDICOMStudy", "SearchDICOMStudies", "SearchDICOMSeries", "SearchDICOMInstances",
                    "StoreDICOM", "StoreDICOMStudy")


ACCOUNT_ACTIONS = ("ListDatastores", "CreateDatastore")  # act on no datastore (Resource "*")


@functools.lru_cache(maxsize=1)
def resource_actions() -> tuple[str, ...]:
    """Every action that acts on a datastore or an image set: what makes a resource visible."""
    import botocore.session

    model = botocore.session.get_session().get_service_model(SERVICE)
    return tuple(f"{SERVICE}:{name}" for name in (*model.operation_names, *DICOMWEB_ACTIONS)
                 if name not in ACCOUNT_ACTIONS)


@dataclass(frozen=True, slots=True)
class Resource:
    """What an operation acts on. No datastore: the account (ListDatastores, CreateDatastore)."""

    datastore_id: str | None = None
    image_set_id: str | None = None
    study_uid: str | None = None    # medical-imaging:StudyInstanceUID
    series_uid: str | None = None   # medical-imaging:SeriesInstanceUID


def missing(resource: Resource) -> NotFound:
    """The NotFound the services raise for a resource that does not exist (same words)."""
    if resource.image_set_id is not None:
        return NotFound(f"image set {resource.image_set_id} does not exist in datastore {resource.datastore_id}")
    return NotFound(f"datastore {resource.datastore_id} does not exist")


class ImageSetScope:
    """Which image sets of one datastore a principal may act on for one action."""

    def __init__(self, everything: bool, check: Callable[[Sequence[str]], set[str]] | None = None) -> None:
        self.everything = everything
        self._check = check

    @property
    def nothing(self) -> bool:
        return not self.everything and self._check is None

    def visible(self, image_set_ids: Iterable[str]) -> set[str]:
        ids = list(dict.fromkeys(image_set_ids))
        if self.everything:
            return set(ids)
        if self._check is None or not ids:
            return set()
        return self._check(ids)


ALL = ImageSetScope(True)
NOTHING = ImageSetScope(False)


class _TagCache:
    """Resource tags by ARN, read in batches, kept `ttl` seconds (tag changes apply within it)."""

    def __init__(self, catalog: Any, ttl: float) -> None:
        self.catalog = catalog
        self.ttl = ttl
        self._items: dict[str, tuple[float, dict[str, str]]] = {}
        self._lock = threading.Lock()

    def get_many(self, arns: Sequence[str]) -> dict[str, dict[str, str]]:
        now = time.monotonic()
        out: dict[str, dict[str, str]] = {}
        wanted = []
        with self._lock:
            for arn in arns:
                hit = self._items.get(arn)
                if hit is not None and hit[0] > now:
                    out[arn] = hit[1]
                else:
                    wanted.append(arn)
        if wanted:
            found: dict[str, dict[str, str]] = {arn: {} for arn in wanted}
            with self.catalog.read() as conn:
                for i in range(0, len(wanted), 500):
                    for row in conn.execute(sa.select(tags).where(tags.c.resource_arn.in_(wanted[i:i + 500]))):
                        found[row.resource_arn][row.key] = row.value
            with self._lock:
                if len(self._items) > 50_000:
                    self._items.clear()
                for arn, values in found.items():
                    self._items[arn] = (now + self.ttl, values)
            out.update(found)
        return out


class Access:
    """Authorization for one server (the catalog supplies resource tags)."""

    def __init__(self, catalog: Any, settings: Settings, *, tag_ttl: float = 2.0) -> None:
        self.settings = settings
        self._tags = _TagCache(catalog, tag_ttl)
        self._account = f"arn:aws:{SERVICE}:{settings.region}:{settings.account_id}"

    # -- ARNs -------------------------------------------------------------------------------------

    def datastore_arn(self, datastore_id: str) -> str:
        return f"{self._account}:datastore/{datastore_id}"

    def image_set_arn(self, datastore_id: str, image_set_id: str) -> str:
        return f"{self._account}:datastore/{datastore_id}/imageset/{image_set_id}"

    def arns(self, resource: Resource) -> tuple[str, ...]:
        """The resource's ARN, then the ARNs of what contains it (a policy naming them covers it)."""
        if resource.datastore_id is None:
            return ("*",)
        ds = self.datastore_arn(resource.datastore_id)
        if resource.image_set_id is None:
            return (ds,)
        return (self.image_set_arn(resource.datastore_id, resource.image_set_id), ds)

    def resource_tags(self, resource: Resource) -> dict[str, str]:
        arns = self.arns(resource)
        if arns == ("*",):
            return {}
        found = self._tags.get_many(list(arns))
        merged: dict[str, str] = {}
        for arn in reversed(arns):  # the datastore's, then the image set's own over them
            merged.update(found.get(arn, {}))
        return merged

    # -- decisions --------------------------------------------------------------------------------

    def _context(self, resource: Resource, source: str | None,
                 tag_values: Callable[[], dict[str, str]]) -> Callable[[str], list[str] | None]:
        def get(key: str) -> list[str] | None:
            lower = key.lower()
            if lower.startswith("aws:resourcetag/"):
                value = tag_values().get(key[len("aws:ResourceTag/"):])
                return None if value is None else [value]
            if lower == "aws:sourceip":
                return [source] if source else None
            if lower == "aws:currenttime":
                return [dt.datetime.now(dt.timezone.utc).isoformat()]
            if lower == "medical-imaging:studyinstanceuid":
                return [resource.study_uid] if resource.study_uid else None
            if lower == "medical-imaging:seriesinstanceuid":
                return [resource.series_uid] if resource.series_uid else None
            return None

        return get

    def decide(self, principal: Principal, action: str, resource: Resource, *, source: str | None = None,
               tag_values: dict[str, str] | None = None) -> Decision:
        policy = principal.policy
        if policy is None:
            return Decision.ALLOW
        cached: list[dict[str, str]] = [tag_values] if tag_values is not None else []

        def lazy_tags() -> dict[str, str]:
            if not cached:
                cached.append(self.resource_tags(resource))
            return cached[0]

        return policy.decide(_qualified(action), self.arns(resource), self._context(resource, source, lazy_tags))

    def allowed(self, principal: Principal, action: str, resource: Resource, *, source: str | None = None) -> bool:
        """allowed(principal, action, resource): the whole policy decision (explicit Deny wins)."""
        return self.decide(principal, action, resource, source=source) == Decision.ALLOW

    def authorize(self, principal: Principal, action: str, resource: Resource, *, source: str | None = None,
                  event: Any = None) -> None:
        """Return if allowed; else NotFound (as if absent) when the principal cannot see the resource
        at all, Forbidden when it can. `event` (an audit Event) gets the principal, action,
        resource and decision."""
        if event is not None:
            _describe(event, principal, action, resource)
        if self.allowed(principal, action, resource, source=source):
            if event is not None:
                event.outcome = "allowed"
            return
        denial = (f"User: {principal.name} ({principal.access_key_id}) is not authorized to perform: "
                  f"{_qualified(action)} on resource: {self.arns(resource)[0]}")
        if event is not None:
            event.outcome, event.detail = "denied", denial
        if resource.datastore_id is not None and not self.visible(principal, resource, source=source):
            raise missing(resource)
        raise Forbidden(denial)

    def authorize_within(self, principal: Principal, action: str, resource: Resource, *,
                         source: str | None = None, event: Any = None) -> ImageSetScope:
        """For an action over the image sets of a datastore (a search, a DICOMweb read by UIDs):
        the image sets it may cover; refused like `authorize` when that is none of them."""
        scope = self.image_sets(principal, action, resource, source=source)
        if scope.nothing:
            self.authorize(principal, action, resource, source=source, event=event)  # raises
        elif event is not None:
            _describe(event, principal, action, resource)
            event.outcome = "allowed"
        return scope

    def visible(self, principal: Principal, resource: Resource, *, source: str | None = None) -> bool:
        """May the principal do anything at all to (or, for a datastore, within) the resource?"""
        if principal.policy is None or resource.datastore_id is None:
            return True
        if resource.image_set_id is not None:
            values = self.resource_tags(resource)
            return any(self.decide(principal, a, resource, source=source, tag_values=values) == Decision.ALLOW
                       for a in resource_actions())
        return any(not self.image_sets(principal, a, resource, source=source).nothing for a in resource_actions())

    def datastores(self, principal: Principal, datastore_ids: Iterable[str], *,
                   source: str | None = None) -> set[str]:
        """The datastores (of those given) a principal can see: ListDatastores shows only these."""
        ids = list(datastore_ids)
        if principal.policy is None:
            return set(ids)
        return {d for d in ids if self.visible(principal, Resource(d), source=source)}

    # -- image sets of a datastore (searches, lists, study-level reads) --------------------------------

    def _reach(self, s: Statement, datastore_id: str, source: str | None) -> tuple[bool, bool]:
        """How statement `s` applies to the image sets of a datastore, ignoring tag conditions:
        (may apply to some, applies to all alike)."""
        ds = self.datastore_arn(datastore_id)
        inside = ds + "/imageset/"
        some = every = False
        for pattern in s.resources:
            if glob(pattern).fullmatch(ds):
                some = every = True
                break
            may, covers = prefix_reach(pattern, inside)
            some, every = some or may, every or covers
        if s.not_resource:
            some, every = not every, not some
        if some and s.conditions:
            # Request-level conditions (source address, time) are known now; tag conditions vary.
            request_level = [c for c in s.conditions if not c.key.lower().startswith("aws:resourcetag/")]
            context = self._context(Resource(datastore_id), source, dict)
            if not all(holds(c, context) for c in request_level):
                return False, False
            if len(request_level) != len(s.conditions):
                every = False
        return some, every

    def image_sets(self, principal: Principal, action: str, resource: Resource, *,
                   source: str | None = None) -> ImageSetScope:
        """Which image sets of the resource's datastore the principal may `action` (the resource's
        study and series UIDs are condition keys): ALL, NOTHING or a filter."""
        policy = principal.policy
        if policy is None:
            return ALL
        assert resource.datastore_id is not None
        datastore_id = resource.datastore_id
        qualified = _qualified(action)
        relevant = [s for s in policy.statements if s.matches_action(qualified)]
        reach = [(s, *self._reach(s, datastore_id, source)) for s in relevant]
        if not any(s.allow and some for s, some, _ in reach):
            return NOTHING
        if all(every or not some for _, some, every in reach):
            # Every statement treats all image sets alike: one decision for the datastore.
            decision = self.decide(principal, action, resource, source=source)
            return ALL if decision == Decision.ALLOW else NOTHING

        def check(ids: Sequence[str]) -> set[str]:
            ds = self.datastore_arn(datastore_id)
            arns = {i: self.image_set_arn(datastore_id, i) for i in ids}
            found = self._tags.get_many([ds, *arns.values()]) if policy.uses_resource_tags else {}
            visible = set()
            for image_set_id, arn in arns.items():
                values = {**found.get(ds, {}), **found.get(arn, {})}
                target = Resource(datastore_id, image_set_id, resource.study_uid, resource.series_uid)
                if self.decide(principal, action, target, source=source, tag_values=values) == Decision.ALLOW:
                    visible.add(image_set_id)
            return visible

        return ImageSetScope(False, check)


def _describe(event: Any, principal: Principal, action: str, resource: Resource) -> None:
    event.set_principal(principal)
    event.action = event.action or _qualified(action)  # DIMSE events keep their service's name
    event.datastore_id = resource.datastore_id or event.datastore_id
    event.image_set_id = resource.image_set_id or event.image_set_id
    event.study_uid = resource.study_uid or event.study_uid
    event.series_uid = resource.series_uid or event.series_uid


def visible_studies(scope: ImageSetScope, catalog: Any, datastore_id: str) -> Callable[[list[str]], set[str]] | None:
    """For DICOM queries: a study is shown only when the principal may see every one of its image
    sets (so no count or attribute of a hidden image set shows). None: no filtering needed."""
    if scope.everything:
        return None
    from tessel.catalog.query import study_image_sets

    def visible(study_uids: list[str]) -> set[str]:
        if scope.nothing:
            return set()
        groups = study_image_sets(catalog, datastore_id, study_uids)
        shown = scope.visible([i for ids in groups.values() for i in ids])
        return {uid for uid, ids in groups.items() if ids and ids <= shown}

    return visible


def _qualified(action: str) -> str:
    return action if ":" in action else f"{SERVICE}:{action}"
