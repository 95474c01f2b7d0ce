"""The one decision point on a real catalog: scopes, tag conditions, absent-or-forbidden answers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tessel import retrieve
from tessel.auth import Access, Principal, Resource, parse_policy
from tessel.auth.access import visible_studies
from tessel.errors import Forbidden, NotFound
from tessel.ingest import store_instances
from tessel.lifecycle.datastores import create_datastore, get_datastore
from tessel.stores import Stores
from tests.factory import make_instance

ACCOUNT = "arn:aws:medical-imaging:us-east-1:000000000000"


def principal(statements: list[dict[str, Any]] | None) -> Principal:
    policy = parse_policy({"Statement": statements}) if statements is not None else None
    return Principal("TSLTEST", "test", policy, "sigv4")


def load(stores: Stores, tmp: Path, datastore_id: str, study: str, series: list[str]) -> dict[str, str]:
    """One instance per series (one image set each); series UID -> image set id."""
    parts = [make_instance(tmp / f"{s}.dcm", study=study, series=s, series_number=n).read_bytes()
             for n, s in enumerate(series, 1)]
    results = store_instances(stores, datastore_id, parts)
    assert all(r.placement is not None for r in results)
    return {s: r.placement.image_set_id for s, r in zip(series, results)}  # type: ignore[union-attr]


@pytest.fixture
def world(stores: Stores, tmp_path: Path) -> dict[str, Any]:
    a = create_datastore(stores, "a").id
    b = create_datastore(stores, "b").id
    sets_a = load(stores, tmp_path, a, "1.2.3.1", ["1.2.3.1.1", "1.2.3.1.2"])
    sets_a2 = load(stores, tmp_path, a, "1.2.3.2", ["1.2.3.2.1"])
    sets_b = load(stores, tmp_path, b, "1.2.3.3", ["1.2.3.3.1"])
    tagged = sets_a["1.2.3.1.1"]
    with stores.catalog.write() as conn:
        stores.catalog.set_tags(conn, f"{ACCOUNT}:datastore/{a}/imageset/{tagged}", {"project": "alpha"})
        stores.catalog.set_tags(conn, f"{ACCOUNT}:datastore/{a}/imageset/{sets_a2['1.2.3.2.1']}", {"project": "alpha"})
    return {"a": a, "b": b, "tagged": tagged, "untagged": sets_a["1.2.3.1.2"], "a2": sets_a2["1.2.3.2.1"],
            "in_b": sets_b["1.2.3.3.1"]}


def denial(call: Any) -> Exception:
    with pytest.raises((NotFound, Forbidden)) as caught:
        call()
    return caught.value


def test_a_datastore_scoped_principal_sees_nothing_of_another(stores: Stores, world: dict[str, Any]) -> None:
    access = Access(stores.catalog, stores.settings)
    a, b = world["a"], world["b"]
    scoped = principal([{"Effect": "Allow", "Action": "medical-imaging:*", "Resource": f"{ACCOUNT}:datastore/{a}"}])
    access.authorize(scoped, "GetImageSet", Resource(a, world["tagged"]))
    assert access.image_sets(scoped, "SearchImageSets", Resource(a)).everything
    assert access.image_sets(scoped, "SearchImageSets", Resource(b)).nothing
    assert access.datastores(scoped, [a, b]) == {a}
    # Denied exactly as a missing datastore / image set is reported by the services.
    real_missing = denial(lambda: get_datastore(stores, "0" * 32))
    denied = denial(lambda: access.authorize(scoped, "GetDatastore", Resource(b)))
    assert isinstance(denied, NotFound) and denied.message == real_missing.message.replace("0" * 32, b)
    real_missing = denial(lambda: retrieve.get_image_set(stores, b, "f" * 32))
    denied = denial(lambda: access.authorize(scoped, "GetImageFrame", Resource(b, world["in_b"])))
    assert isinstance(denied, NotFound)
    assert denied.message == real_missing.message.replace("f" * 32, world["in_b"])


def test_a_read_only_principal_is_forbidden_to_write_what_it_can_see(stores: Stores, world: dict[str, Any]) -> None:
    access = Access(stores.catalog, stores.settings)
    reader = principal([{"Effect": "Allow", "Action": ["medical-imaging:Get*", "medical-imaging:Search*",
                                                       "medical-imaging:List*"], "Resource": "*"}])
    access.authorize(reader, "GetImageSetMetadata", Resource(world["a"], world["untagged"]))
    with pytest.raises(Forbidden, match="DeleteImageSet"):
        access.authorize(reader, "DeleteImageSet", Resource(world["a"], world["untagged"]))
    with pytest.raises(Forbidden, match="CreateDatastore"):
        access.authorize(reader, "CreateDatastore", Resource())


def test_a_tag_condition_restricts_to_tagged_image_sets(stores: Stores, world: dict[str, Any]) -> None:
    access = Access(stores.catalog, stores.settings)
    a = world["a"]
    tagged = principal([{"Effect": "Allow", "Action": "medical-imaging:*", "Resource": "*",
                         "Condition": {"StringEquals": {"aws:ResourceTag/project": "alpha"}}}])
    access.authorize(tagged, "GetImageFrame", Resource(a, world["tagged"]))
    assert isinstance(denial(lambda: access.authorize(tagged, "GetImageFrame", Resource(a, world["untagged"]))),
                      NotFound)
    scope = access.authorize_within(tagged, "SearchImageSets", Resource(a))
    assert not scope.everything and not scope.nothing
    assert scope.visible([world["tagged"], world["untagged"], world["a2"]]) == {world["tagged"], world["a2"]}
    # DICOM queries show a study only when every image set in it is visible.
    studies = visible_studies(scope, stores.catalog, a)
    assert studies is not None and studies(["1.2.3.1", "1.2.3.2"]) == {"1.2.3.2"}


def test_an_explicit_deny_on_tagged_image_sets_hides_them_from_searches(stores: Stores,
                                                                      world: dict[str, Any]) -> None:
    access = Access(stores.catalog, stores.settings)
    guarded = principal([
        {"Effect": "Allow", "Action": "medical-imaging:*", "Resource": "*"},
        {"Effect": "Deny", "Action": "medical-imaging:*", "Resource": "*",
         "Condition": {"StringEquals": {"aws:ResourceTag/project": "alpha"}}}])
    scope = access.image_sets(guarded, "SearchImageSets", Resource(world["a"]))
    assert scope.visible([world["tagged"], world["untagged"]]) == {world["untagged"]}
    assert isinstance(denial(lambda: access.authorize(guarded, "GetImageSet", Resource(world["a"], world["tagged"]))),
                      NotFound)


def test_an_administrator_is_allowed_everything_without_reading_tags(stores: Stores, world: dict[str, Any]) -> None:
    access = Access(stores.catalog, stores.settings)
    admin = principal(None)
    assert access.allowed(admin, "DeleteDatastore", Resource(world["b"]))
    assert access.image_sets(admin, "SearchImageSets", Resource(world["a"])).everything
