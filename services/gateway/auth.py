"""Bearer-token authentication: Ed25519 key files, token issuing, and cached verification.

Tokens are JWTs signed with Ed25519 (``EdDSA``). The verifier accepts that
algorithm and no other, whatever a token's header claims, and requires
``iss``, ``aud``, ``exp`` and ``sub``. Verified tokens are cached by the
SHA-256 of their text in a bounded LRU, and a cached token's expiry is still
checked on every hit. The development issuer (``brokermesh token``) and the
tests share the key handling and signing here.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from brokermesh.mesh.keys import ensure_private_key
from brokermesh.services.gateway.settings import DEFAULT_AUDIENCE, DEFAULT_ISSUER, PUBLIC_KEY_FILE

#: The only signature algorithm the gateway accepts; never taken from a token's header.
ALGORITHMS = ["EdDSA"]
#: File name of the private half of the key pair, kept beside the public one.
PRIVATE_KEY_FILE = "jwt-signing.pem"
#: Claims a token must carry to be considered at all.
REQUIRED_CLAIMS = ["iss", "aud", "exp", "sub"]


class AuthError(Exception):
    """A request's bearer token is missing or not acceptable."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a verified token speaks for."""

    subject: str
    role: str
    expires_at: float


# -- keys and issuing ------------------------------------------------------------------------


def ensure_key_pair(keys_dir: Path) -> Ed25519PrivateKey:
    """Load the signing key from ``keys_dir``, creating the pair on first use.

    The private key is written with mode 0600 and never overwritten; the public
    key (``jwt-signing.pub.pem``) is written beside it for the gateway to read.
    """
    key, _ = ensure_private_key(keys_dir / PRIVATE_KEY_FILE, keys_dir / PUBLIC_KEY_FILE)
    return key


def issue_token(
    key: Ed25519PrivateKey,
    subject: str,
    *,
    ttl_s: float,
    issuer: str = DEFAULT_ISSUER,
    audience: str = DEFAULT_AUDIENCE,
    role: str = "advisor",
    now: float | None = None,
) -> str:
    """A signed token for ``subject`` valid for ``ttl_s`` seconds from ``now``."""
    issued = int(time.time() if now is None else now)
    claims = {
        "sub": subject,
        "iss": issuer,
        "aud": audience,
        "iat": issued,
        "exp": issued + int(ttl_s),
        "role": role,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, key, algorithm="EdDSA")


# -- verifying -------------------------------------------------------------------------------


class TokenVerifier:
    """Verifies bearer tokens against one public key, issuer and audience.

    Safe to call from many requests at once: it never awaits. A token seen
    before is answered from the cache until it expires, then verified afresh
    (and so refused).
    """

    def __init__(
        self, public_key: Ed25519PublicKey, *, issuer: str, audience: str, cache_size: int = 10_000
    ) -> None:
        self._key = public_key
        self._issuer = issuer
        self._audience = audience
        self._cache_size = cache_size
        self._cache: OrderedDict[bytes, Principal] = OrderedDict()

    def verify(self, token: str, *, now: float | None = None) -> Principal:
        """The principal ``token`` speaks for; raises :class:`AuthError` otherwise."""
        moment = time.time() if now is None else now
        digest = hashlib.sha256(token.encode()).digest()
        cached = self._cache.get(digest)
        if cached is not None:
            if cached.expires_at > moment:
                self._cache.move_to_end(digest)
                return cached
            del self._cache[digest]
        principal = self._decode(token)
        if principal.expires_at <= moment:
            raise AuthError("token has expired")
        self._remember(digest, principal)
        return principal

    def authenticate(self, authorization: str | None) -> Principal:
        """The principal of an ``Authorization: Bearer <token>`` header value."""
        if not authorization:
            raise AuthError("missing bearer token")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError("authorization is not a bearer token")
        return self.verify(token.strip())

    def _decode(self, token: str) -> Principal:
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=ALGORITHMS,
                issuer=self._issuer,
                audience=self._audience,
                options={"require": REQUIRED_CLAIMS},
            )
        except jwt.PyJWTError as exc:
            raise AuthError(f"invalid token: {exc}") from exc
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise AuthError("invalid token: sub must be a non-empty string")
        return Principal(
            subject=subject, role=str(claims.get("role", "")), expires_at=float(claims["exp"])
        )

    def _remember(self, digest: bytes, principal: Principal) -> None:
        self._cache[digest] = principal
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
