"""SigV4 verification in isolation: requests signed by botocore's signer (and curl's way) verify;
any change after signing, a wrong secret, an old date or an unknown key does not."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from typing import Callable
from urllib.parse import urlsplit

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tessel.auth.keys import AccessKey, KeyStatus
from tessel.auth.sigv4 import ReceivedRequest, signing_key, verify
from tessel.config import Secret
from tessel.errors import Unauthenticated

KEY = AccessKey("TSLUNITKEY0000000001", "unit", Secret("unit-secret"), KeyStatus.ACTIVE, None, 0.0)
ARN_PATH = ("/tags/arn%3Aaws%3Amedical-imaging%3Aus-east-1%3A000000000000%3Adatastore%2F"
            + "a" * 32 + "%2Fimageset%2F" + "b" * 32)


def lookup(key_id: str) -> AccessKey | None:
    return KEY if key_id == KEY.access_key_id else None


def signed(method: str, url: str, body: bytes = b"", *, secret: str = "unit-secret",
           headers: dict[str, str] | None = None) -> ReceivedRequest:
    request = AWSRequest(method=method, url=url, data=body, headers=headers or {})
    SigV4Auth(Credentials(KEY.access_key_id, secret), "medical-imaging", "us-east-1").add_auth(request)
    parts = urlsplit(url)
    sent = [(k, str(v)) for k, v in request.headers.items()] + [("Host", parts.netloc)]
    return ReceivedRequest(method, parts.path, parts.query, sent, body)


def with_header(request: ReceivedRequest, name: str, value: str) -> ReceivedRequest:
    headers = [(k, v) for k, v in request.headers if k.lower() != name.lower()] + [(name, value)]
    return ReceivedRequest(request.method, request.raw_path, request.query_string, headers, request.body)


def test_a_botocore_signed_request_verifies_to_its_key() -> None:
    request = signed("POST", "http://127.0.0.1:8080/datastore/" + "a" * 32 + "/searchImageSets?maxResults=5",
                     b'{"filters": []}')
    principal = verify(request, lookup)
    assert principal.access_key_id == KEY.access_key_id and principal.method == "sigv4"


@pytest.mark.parametrize("url", [
    "http://localhost:8080" + ARN_PATH,
    "http://localhost:8080" + ARN_PATH + "?tagKeys=b&tagKeys=a&tagKeys=with%20space",
    "http://localhost/datastore?datastoreStatus=ACTIVE&maxResults=2&nextToken=eyJvcCI6IkxpcyJ9",
])
def test_encoded_paths_and_repeated_query_keys_verify(url: str) -> None:
    assert verify(signed("DELETE", url), lookup).name == "unit"


def test_a_literal_content_sha256_header_is_the_signed_payload_hash_as_curl_sends_it() -> None:
    body = b"\x00DICM" * 10
    digest = hashlib.sha256(body).hexdigest()
    request = signed("POST", "http://127.0.0.1/datastore/x/studies", body,
                     headers={"X-Amz-Content-SHA256": digest})
    assert verify(request, lookup).name == "unit"
    streaming = signed("POST", "http://127.0.0.1/datastore/x/studies", body,
                       headers={"X-Amz-Content-SHA256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"})
    assert verify(streaming, lookup).name == "unit"


def test_a_declared_payload_hash_that_is_not_the_body_is_refused() -> None:
    request = signed("POST", "http://127.0.0.1/datastore", b"{}",
                     headers={"X-Amz-Content-SHA256": hashlib.sha256(b"other").hexdigest()})
    with pytest.raises(Unauthenticated, match="does not match the request body"):
        verify(request, lookup)


Mutation = Callable[[ReceivedRequest], ReceivedRequest]


@pytest.mark.parametrize("mutate", [
    lambda r: ReceivedRequest(r.method, r.raw_path, r.query_string, r.headers, r.body + b" "),
    lambda r: ReceivedRequest("PUT", r.raw_path, r.query_string, r.headers, r.body),
    lambda r: ReceivedRequest(r.method, r.raw_path + "x", r.query_string, r.headers, r.body),
    lambda r: ReceivedRequest(r.method, r.raw_path, "maxResults=6", r.headers, r.body),
    lambda r: with_header(r, "Host", "evil.example"),
], ids=["body", "method", "path", "query", "host"])
def test_anything_changed_after_signing_is_refused(mutate: Mutation) -> None:
    request = signed("POST", "http://127.0.0.1/datastore?maxResults=5", b'{"clientToken": "t"}')
    verify(request, lookup)
    with pytest.raises(Unauthenticated, match="signature"):
        verify(mutate(request), lookup)


def test_wrong_secret_unknown_key_disabled_key_and_unsigned_are_refused() -> None:
    url = "http://127.0.0.1/datastore"
    with pytest.raises(Unauthenticated, match="signature"):
        verify(signed("GET", url, secret="not-the-secret"), lookup)
    with pytest.raises(Unauthenticated, match="unknown or disabled"):
        verify(signed("GET", url), lambda _key_id: None)
    disabled = AccessKey(KEY.access_key_id, "d", KEY.secret, KeyStatus.DISABLED, None, 0.0)
    with pytest.raises(Unauthenticated, match="unknown or disabled"):
        verify(signed("GET", url), lambda _key_id: disabled)
    with pytest.raises(Unauthenticated, match="not signed"):
        verify(ReceivedRequest("GET", "/datastore", "", [("Host", "127.0.0.1")], b""), lookup)


def test_a_signature_older_or_newer_than_15_minutes_is_refused() -> None:
    request = signed("GET", "http://127.0.0.1/datastore")
    now = dt.datetime.now(dt.timezone.utc)
    verify(request, lookup, now=now + dt.timedelta(minutes=14))
    for skew in (dt.timedelta(minutes=16), -dt.timedelta(minutes=16)):
        with pytest.raises(Unauthenticated, match="expired"):
            verify(request, lookup, now=now + skew)


def test_a_scope_for_another_service_is_refused() -> None:
    request = AWSRequest(method="GET", url="http://127.0.0.1/datastore")
    SigV4Auth(Credentials(KEY.access_key_id, "unit-secret"), "s3", "us-east-1").add_auth(request)
    received = ReceivedRequest("GET", "/datastore", "", [*request.headers.items(), ("Host", "127.0.0.1")], b"")
    with pytest.raises(Unauthenticated, match="service 's3'"):
        verify(received, lookup)


def test_the_cached_signing_key_signs_as_botocore_does() -> None:
    request = AWSRequest(method="GET", url="http://127.0.0.1/datastore")
    request.context["timestamp"] = "20240229T235959Z"
    for secret, region, service in [("unit-secret", "us-east-1", "medical-imaging"),
                                    ("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "eu-west-2", "s3")]:
        botocore_signer = SigV4Auth(Credentials("AKID", secret), service, region)
        string_to_sign = f"AWS4-HMAC-SHA256\n20240229T235959Z\n20240229/{region}/{service}/aws4_request\n" + "ab" * 32
        expected = botocore_signer.signature(string_to_sign, request)
        ours = hmac.new(signing_key(secret, "20240229", region, service), string_to_sign.encode(),
                        hashlib.sha256).hexdigest()
        assert ours == expected
