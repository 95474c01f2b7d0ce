"""Master keys and data keys: generation, wrapping, rotation without rewriting data, wrong key files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tessel.config import Secret, Settings
from tessel.crypto import DataKeys, Keyring, key_name_from_arn
from tessel.errors import Corrupted, InvalidInput, Unavailable
from tessel.lifecycle.datastores import create_datastore
from tessel.stores import Stores, open_stores


def test_the_keyring_is_generated_once_private_and_reloaded(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    ring = Keyring.open(path)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    again = Keyring.open(path)
    assert again.versions("tessel-default") == ring.versions("tessel-default")
    version, wrapped = ring.wrap("tessel-default", b"k" * 32, b"aad")
    assert again.unwrap("tessel-default", version, wrapped, b"aad") == b"k" * 32
    with pytest.raises(Corrupted):
        again.unwrap("tessel-default", version, wrapped, b"other aad")


def test_a_damaged_keyring_file_is_refused_with_its_name(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    path.write_text(json.dumps({"format": "tessel-master-keys/1", "default": "x", "keys": {}}))
    with pytest.raises(Unavailable, match="not a valid keyring"):
        Keyring.open(path)


def test_kms_key_arns_name_master_keys() -> None:
    assert key_name_from_arn("arn:aws:kms:eu-west-1:123456789012:key/archive-2025") == "archive-2025"
    assert key_name_from_arn("arn:aws:kms:eu-west-1:123456789012:alias/archive") == "archive"
    with pytest.raises(InvalidInput):
        key_name_from_arn("arn:aws:kms:eu-west-1:1:key/has space")


def test_rotation_rewraps_data_keys_and_leaves_blobs_untouched(stores: Stores) -> None:
    assert stores.crypto is not None
    ds = create_datastore(stores, "rotating")
    key = f"ds/{ds.id}/bulk/ab/cd/abcd"
    stores.blobs.put(key, b"protected health information")
    inner = stores.blobs.inner  # type: ignore[attr-defined]
    raw_before = inner.get(key)
    ring = stores.crypto.keyring
    old, _ = ring.versions("tessel-default")
    new = ring.add_version("tessel-default")
    assert stores.crypto.rewrap("tessel-default") == 1  # the datastore's data key
    assert ring.drop_old_versions("tessel-default") == [old]
    assert inner.get(key) == raw_before  # no data rewritten
    # A fresh process (new caches) reads the blob through the re-wrapped key.
    fresh = open_stores(stores.settings)
    try:
        assert fresh.blobs.get(key) == b"protected health information"
        assert {v for (_, v) in fresh.crypto.usage()} == {new}  # type: ignore[union-attr]
    finally:
        fresh.close()


def test_a_datastore_uses_the_master_key_its_kms_key_arn_names(stores: Stores) -> None:
    assert stores.crypto is not None
    stores.crypto.keyring.create_key("archive")
    ds = create_datastore(stores, "archived", kms_key_arn="arn:aws:kms:us-east-1:000000000000:key/archive")
    assert stores.crypto.usage().get(("archive", stores.crypto.keyring.versions("archive")[0])) == 1
    stores.blobs.put(f"ds/{ds.id}/bulk/00/00/0000", b"x")
    with pytest.raises(InvalidInput, match="tessel master-key create nowhere"):
        create_datastore(stores, "bad", kms_key_arn="arn:aws:kms:us-east-1:000000000000:key/nowhere")


def test_the_wrong_master_key_file_is_refused_at_start(stores: Stores, tmp_path: Path) -> None:
    create_datastore(stores, "keyed")
    other = stores.settings.with_(master_key_file=tmp_path / "elsewhere.key")
    with pytest.raises(Unavailable, match="lacks tessel-default version"):
        open_stores(other)


def test_concurrent_creation_agrees_on_one_data_key(stores: Stores) -> None:
    assert stores.crypto is not None
    other = DataKeys(stores.catalog, stores.crypto.keyring)
    first = stores.crypto.secret("datastore/shared")
    assert other.secret("datastore/shared") == first


def test_deleting_a_datastore_destroys_its_data_key(stores: Stores) -> None:
    from tessel.crypto import datastore_key_name
    from tessel.lifecycle.datastores import delete_datastore

    assert stores.crypto is not None
    ds = create_datastore(stores, "short-lived")
    key = f"ds/{ds.id}/bulk/00/00/0001"
    stores.blobs.put(key, b"to be forgotten")
    copy = stores.blobs.inner.get(key)  # type: ignore[attr-defined]  # a backup someone kept
    delete_datastore(stores, ds.id)
    assert datastore_key_name(ds.id) not in stores.crypto.names()
    stores.blobs.inner.put(key, copy)  # type: ignore[attr-defined]  # restored from that backup
    fresh = open_stores(stores.settings)
    try:
        with pytest.raises(Corrupted):  # unreadable: the key that could open it is gone
            fresh.blobs.get(key)
    finally:
        fresh.close()


def _material() -> str:
    import base64
    import secrets

    return base64.b64encode(secrets.token_bytes(32)).decode()


def test_master_keys_from_the_environment_are_parsed_and_never_written(tmp_path: Path) -> None:
    first, second, archive = _material(), _material(), _material()
    ring = Keyring.from_environment(f" {first},{second} ; archive:{archive}")
    assert ring.default == "tessel-default" and ring.names() == ["archive", "tessel-default"]
    current, versions = ring.versions("tessel-default")
    assert len(versions) == 2 and current == ring.describe()[1]["current"]
    version, wrapped = ring.wrap("archive", b"d" * 32, b"aad")
    assert Keyring.from_environment(f"x:{_material()};archive:{archive}").unwrap(
        "archive", version, wrapped, b"aad") == b"d" * 32
    with pytest.raises(InvalidInput, match="change that variable"):
        ring.create_key("more")
    with pytest.raises(InvalidInput, match="change that variable"):
        ring.add_version("archive")
    named = Keyring.from_environment(f"radiology:{first}")
    assert named.default == "radiology"
    for bad, why in (("", "empty"), ("c2hvcnQ=", "32 bytes"), (f"{first};{second}", "needs a name"),
                     (f"a:{first};a:{second}", "given twice"), ("not base64!", "is not")):
        with pytest.raises(InvalidInput, match=why) as caught:
            Keyring.from_environment(bad)
        assert first not in str(caught.value) and second not in str(caught.value)  # never echoes a key


def test_a_server_keyring_from_the_environment_rotates_by_changing_the_variable(settings: Settings) -> None:
    old, new = _material(), _material()
    with pytest.raises(InvalidInput, match="not both"):
        open_stores(settings.with_(master_key=Secret(old), master_key_file=settings.data_dir / "k"))
    first = open_stores(settings.with_(master_key=Secret(old)))
    try:
        ds = create_datastore(first, "env-keyed")
        key = f"ds/{ds.id}/bulk/00/00/0002"
        first.blobs.put(key, b"protected health information")
        assert first.blobs.inner.get(key) != b"protected health information"  # type: ignore[attr-defined]
    finally:
        first.close()
    assert not (settings.data_dir / "master.key").exists()  # nothing generated beside the data
    # step 1: the new material first, the old after it; re-wrap (what `tessel master-key rotate` does)
    both = open_stores(settings.with_(master_key=Secret(f"{new},{old}")))
    try:
        assert both.blobs.get(key) == b"protected health information"
        assert both.crypto is not None and both.crypto.rewrap("tessel-default") >= 1
    finally:
        both.close()
    # step 2: the old material dropped: everything still reads; the old material alone no longer starts
    after = open_stores(settings.with_(master_key=Secret(new)))
    try:
        assert after.blobs.get(key) == b"protected health information"
    finally:
        after.close()
    with pytest.raises(Unavailable, match="lacks tessel-default version"):
        open_stores(settings.with_(master_key=Secret(old)))
