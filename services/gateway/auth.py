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
import os
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

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
    private_path = keys_dir / PRIVATE_KEY_FILE
    if private_path.exists():
        key = load_private_key(private_path)
    else:
        keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        key = Ed25519PrivateKey.generate()
        _write_private(private_path, key)
    public_path = keys_dir / PUBLIC_KEY_FILE
    if not public_path.exists():
        public_path.write_bytes(public_pem(key.public_key()))
    return key


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """Read an Ed25519 private key from a PEM file."""
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} does not hold an Ed25519 private key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """Read an Ed25519 public key from a PEM file."""
    key = serialization.load_pem_public_key(path.read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path} does not hold an Ed25519 public key")
    return key


def public_pem(key: Ed25519PublicKey) -> bytes:
    """``key`` as SubjectPublicKeyInfo PEM."""
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


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


def _write_private(path: Path, key: Ed25519PrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    # O_EXCL: two first runs racing must not leave one's key with the other's public half.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(pem)


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
