"""Bearer tokens signed by the operator's identity provider (JSON Web Tokens).

A token is accepted when its signature verifies against a key of the configured JWKS
(a file or an HTTPS URL), its issuer and audience are the configured ones, and it has not
expired. Its claims become the principal: the tenant claim, the subject as key id, the
roles and the models it may use. Only asymmetric algorithms are accepted, so a token
cannot be signed with a public key taken for a shared secret, and ``none`` never passes.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import orjson

from libs.errors import UnavailableError
from libs.principal import Principal

logger = logging.getLogger(__name__)

# The accepted algorithms, with the JWK key type ("kty") that each needs.
_KEY_TYPES = {
    **{name: "RSA" for name in ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")},
    **{name: "EC" for name in ("ES256", "ES384", "ES512")},
    "EdDSA": "OKP",
}
ALGORITHMS = frozenset(_KEY_TYPES)
# Seconds of clock difference allowed between the identity provider and this service.
LEEWAY_S = 30
# A token whose key id is not in the key set reloads the set, at most this often.
UNKNOWN_KEY_RELOAD_S = 30.0
FETCH_TIMEOUT_S = 5.0
# After a failed load of the key set, the next attempt waits this long.
RETRY_AFTER_FAILURE_S = 5.0
# Key ids of principals from tokens start with this, so that no subject can share an
# API key's id, and with it its budget and rate limits.
KEY_ID_PREFIX = "jwt:"

# Tenants, roles and model names travel in headers, the roles and models as
# comma-separated lists, so they are limited to characters that need no escaping.
_IDENTIFIER = re.compile(r"[A-Za-z0-9._:/@+-]{1,128}")
_SUBJECT = re.compile(r"[\x21-\x7e]{1,200}")


def looks_like_jwt(token: str) -> bool:
    """Return True for a compact JWS: three base64url segments, the first a JSON object."""
    return token.startswith("eyJ") and token.count(".") == 2


class TokenError(Exception):
    """The token was rejected. The message gives the reason, for the client, and never contains the token."""


@dataclass(frozen=True)
class JwtSettings:
    """Location of the signing keys and the claims a token must carry."""

    jwks: str
    """Path of a JWKS file, or the ``https://`` URL of the provider's JWKS."""
    issuer: str
    """Required ``iss`` claim."""
    audience: str
    """Required ``aud`` claim (one of them, when the token has several)."""
    tenant_claim: str = "tenant"
    roles_claim: str = "roles"
    models_claim: str = "models"
    refresh_s: float = 300.0
    """Seconds after which the key set is loaded again."""


class JwtVerifier:
    """Verifies tokens against a key set that it reloads every ``refresh_s`` and on unknown key ids."""

    def __init__(self, settings: JwtSettings, ssl_context: ssl.SSLContext | None = None) -> None:
        """``ssl_context`` verifies an ``https://`` JWKS; the default trusts the system's CAs."""
        self.settings = settings
        self.ssl_context = ssl_context
        self._keys: dict[str, Any] = {}
        self._loaded_at = float("-inf")
        self._retry_at = 0.0
        self._generation = 0
        self._lock = asyncio.Lock()
        self._background: asyncio.Future[None] | None = None

    async def load(self) -> None:
        """Load the key set now; raise UnavailableError when it cannot be read."""
        raw = await asyncio.to_thread(self._read)
        try:
            key_set = jwt.PyJWKSet.from_dict(orjson.loads(raw))
        except (orjson.JSONDecodeError, jwt.PyJWKSetError, jwt.InvalidKeyError, TypeError) as exc:
            raise UnavailableError(
                f"the JWKS at {self.settings.jwks} is not a valid key set: {exc}", reason="JWKS_INVALID"
            ) from None
        # Keys published for encryption ("use": "enc") never verify a signature.
        self._keys = {key.key_id or "": key for key in key_set.keys if key.public_key_use != "enc"}
        self._loaded_at = time.monotonic()
        self._generation += 1

    def _read(self) -> bytes:
        source = self.settings.jwks
        try:
            if source.startswith("https://"):
                with urllib.request.urlopen(source, timeout=FETCH_TIMEOUT_S, context=self.ssl_context) as response:
                    return bytes(response.read())
            return Path(source).read_bytes()
        except OSError as exc:
            raise UnavailableError(
                f"the JWKS at {source} cannot be read: {exc}", reason="JWKS_UNAVAILABLE", retry_after_s=1.0
            ) from None

    async def _ensure_key(self, kid: str) -> None:
        """Load or reload the key set as ``kid`` and the key set's age require.

        An old set is reloaded in the background while its keys keep serving. An unknown
        key id waits for a reload, at most every UNKNOWN_KEY_RELOAD_S. Without any keys,
        a failed load is retried after RETRY_AFTER_FAILURE_S, and calls meanwhile get
        UnavailableError at once instead of waiting for the provider.
        """
        now = time.monotonic()
        if self._keys and now - self._loaded_at >= self.settings.refresh_s:
            if self._background is None or self._background.done():
                self._background = asyncio.ensure_future(self._reload(self._generation))
        if kid in self._keys:
            return
        if now < self._retry_at:
            if not self._keys:
                raise UnavailableError(
                    "the identity provider's key set is unavailable; retry later",
                    reason="JWKS_UNAVAILABLE",
                    retry_after_s=self._retry_at - now,
                )
            return
        if self._keys and now - self._loaded_at < UNKNOWN_KEY_RELOAD_S:
            return
        await self._reload(self._generation, raise_errors=not self._keys)

    async def _reload(self, generation: int, *, raise_errors: bool = False) -> None:
        async with self._lock:
            if self._generation != generation:
                return  # another call reloaded the set while this one waited
            try:
                await self.load()
            except UnavailableError as exc:
                self._retry_at = time.monotonic() + RETRY_AFTER_FAILURE_S
                # The keys loaded before stay: a provider that is down for a moment must
                # not lock every caller out.
                logger.warning("could not load the JWKS", extra={"error": exc.message, "keys": len(self._keys)})
                if raise_errors:
                    raise

    async def verify(self, token: str) -> Principal:
        """Return the principal the token names, or raise TokenError saying why it is refused."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError:
            raise TokenError("the token is not a well-formed JWT") from None
        algorithm = header.get("alg")
        if algorithm not in ALGORITHMS:
            raise TokenError(f"the token's algorithm {algorithm!r} is not accepted; use one of {sorted(ALGORITHMS)}")
        kid = str(header.get("kid") or "")

        await self._ensure_key(kid)
        key = self._keys.get(kid)
        if key is None:
            raise TokenError(f"the token's signing key {kid!r} is not in the identity provider's key set")
        if _KEY_TYPES[algorithm] != key.key_type:
            raise TokenError(f"the token's algorithm {algorithm} does not fit its signing key of type {key.key_type}")

        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[algorithm],
                audience=self.settings.audience,
                issuer=self.settings.issuer,
                leeway=LEEWAY_S,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise TokenError("the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise TokenError("the token is not valid yet") from None
        except jwt.InvalidAudienceError:
            raise TokenError(f"the token's audience is not {self.settings.audience!r}") from None
        except jwt.InvalidIssuerError:
            raise TokenError(f"the token's issuer is not {self.settings.issuer!r}") from None
        except jwt.MissingRequiredClaimError as exc:
            raise TokenError(f"the token has no `{exc.claim}` claim") from None
        except jwt.InvalidSignatureError:
            raise TokenError("the token's signature does not verify") from None
        except (jwt.PyJWTError, TypeError, ValueError):
            raise TokenError("the token is not a valid JWT") from None
        return self._principal(claims)

    def _principal(self, claims: dict[str, Any]) -> Principal:
        settings = self.settings
        tenant = claims.get(settings.tenant_claim)
        if not isinstance(tenant, str) or not _IDENTIFIER.fullmatch(tenant):
            raise TokenError(
                f"the token's `{settings.tenant_claim}` claim must be a tenant id (1 to 128 letters, digits or ._:/@+-)"
            )
        subject = claims.get("sub")
        if not isinstance(subject, str) or not _SUBJECT.fullmatch(subject):
            raise TokenError("the token's `sub` claim must be 1 to 200 printable ASCII characters without spaces")
        return Principal(
            tenant=tenant,
            key_id=KEY_ID_PREFIX + subject,
            roles=_identifiers(claims, settings.roles_claim),
            allowed_models=_identifiers(claims, settings.models_claim),
        )


def _identifiers(claims: dict[str, Any], name: str) -> tuple[str, ...]:
    """Read a list claim, or a space-separated string as OAuth's ``scope`` is written."""
    value = claims.get(name)
    if value is None:
        return ()
    items = value.split() if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(item, str) and _IDENTIFIER.fullmatch(item) for item in items):
        raise TokenError(f"the token's `{name}` claim must be a list of names (1 to 128 letters, digits or ._:/@+-)")
    return tuple(items)
