"""Bearer tokens: tessel's own (`tessel token create`) and, optionally, an OpenID Connect provider's.

A token is told apart by its issuer (`iss`): "tessel" tokens are HS256 JWTs naming an access
key (auth.tokens); tokens of the configured OIDC issuer are verified against the provider's
JWKS (asymmetric algorithms only; `iss`, `aud`, `exp` required and checked) and mapped to a
policy by a claim, through TESSEL_OIDC_POLICY_FILE:

    {"claim": "groups",                                   # a dotted path works: realm_access.roles
     "policies": {"radiology": {"Statement": [...]},      # an IAM-style policy per claim value
                  "pacs-admins": "administrator"},        # or the word "administrator"
     "default": null}                                     # for tokens matching no value (null: refused)

A token whose claim matches several values gets all their statements (an explicit Deny in any
wins). The principal is `oidc:<sub>`, named by preferred_username, email or sub.
"""

from __future__ import annotations

import json
import threading
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import jwt

from tessel.auth.keys import KeyStore, Principal
from tessel.auth.policy import Policy, parse_policy
from tessel.auth.tokens import ISSUER as TESSEL_ISSUER, TokenSigner
from tessel.errors import Forbidden, InvalidInput, Unauthenticated

ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"]
LEEWAY_SECONDS = 30
ADMINISTRATOR = "administrator"


@dataclass(frozen=True, slots=True)
class RoleMap:
    claim: tuple[str, ...]
    policies: Mapping[str, Policy | None]  # None: administrator
    default: Policy | None | str  # "refuse" when tokens matching nothing are refused

    @classmethod
    def load(cls, path: Path) -> "RoleMap":
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InvalidInput(f"OIDC policy file {path}: {exc}") from None
        if not isinstance(raw, dict) or not isinstance(raw.get("claim"), str) or not isinstance(raw.get("policies"), dict):
            raise InvalidInput(f"OIDC policy file {path}: expected {{\"claim\": NAME, \"policies\": {{VALUE: POLICY}}}}")

        def policy(value: Any, where: str) -> Policy | None:
            if value == ADMINISTRATOR:
                return None
            try:
                return parse_policy(value)
            except InvalidInput as exc:
                raise InvalidInput(f"OIDC policy file {path}, {where}: {exc.message}") from None

        policies = {str(k): policy(v, f"policies[{k!r}]") for k, v in raw["policies"].items()}
        default: Policy | None | str = "refuse" if raw.get("default") is None else policy(raw["default"], "default")
        return cls(tuple(raw["claim"].split(".")), policies, default)

    def policy_for(self, claims: Mapping[str, Any]) -> Policy | None:
        value: Any = claims
        for part in self.claim:
            value = value.get(part) if isinstance(value, Mapping) else None
        values = [value] if isinstance(value, str) else [v for v in value or [] if isinstance(v, str)] \
            if isinstance(value, list) else []
        matched = [self.policies[v] for v in values if v in self.policies]
        if not matched:
            if isinstance(self.default, str):
                raise Forbidden(f"the token's {'.'.join(self.claim)} claim matches no policy of this server")
            return self.default
        if any(p is None for p in matched):
            return None
        statements = tuple(s for p in matched if p is not None for s in p.statements)
        return Policy(statements, {"Statement": [dict(p.document).get("Statement") for p in matched if p]})


class OidcVerifier:
    """Verifies one issuer's tokens against its JWKS (fetched, cached, refetched for new key ids)."""

    def __init__(self, issuer: str, audience: str | None, jwks_url: str | None, roles: RoleMap) -> None:
        self.issuer = issuer.rstrip("/")
        self.audience = audience
        self._jwks_url = jwks_url
        self.roles = roles
        self._client: jwt.PyJWKClient | None = None
        self._lock = threading.Lock()

    def _jwks(self) -> jwt.PyJWKClient:
        with self._lock:
            if self._client is None:
                url = self._jwks_url or self._discover()
                self._client = jwt.PyJWKClient(url, cache_keys=True, lifespan=600, timeout=5)
            return self._client

    def _discover(self) -> str:
        url = f"{self.issuer}/.well-known/openid-configuration"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - the configured issuer
                return str(json.loads(response.read())["jwks_uri"])
        except (OSError, ValueError, KeyError) as exc:
            raise Unauthenticated(f"the OpenID Connect provider's configuration could not be read ({exc})") from None

    def principal(self, token: str) -> Principal:
        try:
            key = self._jwks().get_signing_key_from_jwt(token)
            claims = jwt.decode(token, key.key, algorithms=ALGORITHMS, issuer=[self.issuer, self.issuer + "/"],
                                audience=self.audience, leeway=LEEWAY_SECONDS,
                                options={"require": ["exp", "iss", "sub"], "verify_aud": self.audience is not None})
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("the bearer token has expired") from None
        except jwt.PyJWKClientError as exc:
            raise Unauthenticated(f"the bearer token's signing key is not the provider's ({exc})") from None
        except jwt.InvalidTokenError as exc:
            raise Unauthenticated(f"the bearer token is invalid ({exc})") from None
        name = str(claims.get("preferred_username") or claims.get("email") or claims["sub"])
        return Principal(f"oidc:{claims['sub']}"[:256], name[:256], self.roles.policy_for(claims), "oidc")


class Bearer:
    """`Authorization: Bearer` for DICOMweb and the viewer: tessel's tokens, then the OIDC issuer's."""

    def __init__(self, signer: TokenSigner, keys: KeyStore, oidc: OidcVerifier | None = None) -> None:
        self.signer = signer
        self.keys = keys
        self.oidc = oidc

    def principal(self, token: str) -> Principal:
        try:
            issuer = str(jwt.decode(token, options={"verify_signature": False}).get("iss", "")).rstrip("/")
        except jwt.InvalidTokenError:
            raise Unauthenticated("the bearer token is invalid (not a signed JWT)") from None
        if issuer == TESSEL_ISSUER:
            return self.signer.principal(token, self.keys)
        if self.oidc is not None and issuer == self.oidc.issuer:
            return self.oidc.principal(token)
        raise Unauthenticated("the bearer token's issuer is not trusted by this server")


def oidc_from_settings(settings: Any) -> OidcVerifier | None:
    if not settings.oidc_issuer:
        return None
    if not settings.oidc_policy_file:
        raise InvalidInput("TESSEL_OIDC_ISSUER needs TESSEL_OIDC_POLICY_FILE (which claim values get which policy)")
    return OidcVerifier(settings.oidc_issuer, settings.oidc_audience, settings.oidc_jwks_url,
                        RoleMap.load(Path(settings.oidc_policy_file)))

