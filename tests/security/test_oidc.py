"""Bearer tokens from an OpenID Connect provider (a local key pair and JWKS): verified, mapped to policies."""

from __future__ import annotations

import json
import time

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.security.conftest import STUDY_A1, STUDY_A2, World


def qido(world: World, token: str) -> tuple[int, str]:
    with world.http() as http:
        r = http.get(f"/datastore/{world.a}/studies", headers={"Authorization": f"Bearer {token}",
                                                               "Accept": "application/dicom+json"})
    return r.status_code, r.text


def test_a_provider_token_acts_with_the_policy_its_groups_map_to(world: World) -> None:
    status, body = qido(world, world.provider.token(groups=["readers"], sub="dr-who"))
    assert status == 200 and {s["0020000D"]["Value"][0] for s in json.loads(body)} == {STUDY_A1, STUDY_A2}
    status, body = qido(world, world.provider.token(groups=["alpha-team", "unrelated"], sub="researcher"))
    assert status == 200 and {s["0020000D"]["Value"][0] for s in json.loads(body)} == {STUDY_A2}
    with world.http() as http:
        r = http.post(f"/datastore/{world.a}/studies", content=world.files["b"].read_bytes(),
                      headers={"Authorization": f"Bearer {world.provider.token(groups=['readers'])}",
                               "Content-Type": "application/dicom"})
    assert r.status_code == 403 and "StoreDICOM" in r.json()["message"]
    status, body = qido(world, world.provider.token(groups=["visitors"]))
    assert status == 403 and "matches no policy" in body


def test_bad_provider_tokens_are_refused(world: World) -> None:
    provider = world.provider
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    # A symmetric token keyed with (a piece of) the public key: the classic algorithm confusion.
    public_pem = provider.key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    confused = jwt.encode({"iss": provider.issuer, "sub": "x", "aud": provider.AUDIENCE, "exp": int(time.time()) + 60,
                           "groups": ["readers"]}, public_pem.decode()[:64], algorithm="HS256",
                          headers={"kid": "test-key-1"})
    cases = {
        "expired": provider.token(groups=["readers"], issued=time.time() - 3600, ttl=60),
        "audience": provider.token(groups=["readers"], audience="someone-else"),
        "signature": provider.token(groups=["readers"], key=other_key),
        "unknown key": provider.token(groups=["readers"], key=other_key, kid="not-published"),
        "algorithm": confused,
        "issuer": jwt.encode({"iss": "http://evil.example", "sub": "x", "exp": int(time.time()) + 60},
                             other_key, algorithm="RS256"),
    }
    for name, token in cases.items():
        status, body = qido(world, token)
        assert status == 401, (name, body)
        assert STUDY_A1 not in body
    assert "expired" in qido(world, cases["expired"])[1]


def test_provider_principals_are_named_in_the_audit_trail(world: World) -> None:
    qido(world, world.provider.token(groups=["readers"], sub="auditor-check"))
    time.sleep(0.8)
    rows = [json.loads(line) for line in world.tessel("audit", "--json", "--principal", "oidc:auditor-check")
            .stdout.splitlines()]
    assert rows and rows[-1]["auth"] == "oidc" and rows[-1]["principal_name"] == "auditor-check@hospital"
    assert rows[-1]["outcome"] == "allowed" and rows[-1]["action"] == "medical-imaging:SearchDICOMStudies"
