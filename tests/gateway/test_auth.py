"""Bearer-token verification: only Ed25519 tokens from our issuer for our audience pass."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import stat
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from brokermesh.mesh import keys
from brokermesh.services.gateway import auth
from brokermesh.services.gateway.settings import DEFAULT_AUDIENCE, DEFAULT_ISSUER


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def verifier(key: Ed25519PrivateKey) -> auth.TokenVerifier:
    return auth.TokenVerifier(
        key.public_key(), issuer=DEFAULT_ISSUER, audience=DEFAULT_AUDIENCE, cache_size=4
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _forged(header: dict[str, Any], claims: dict[str, Any], secret: bytes | None) -> str:
    """A token assembled by hand, HMAC-signed with ``secret`` or unsigned."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    if secret is None:
        return signing_input + "."
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def _claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "sub": "ADV-1207",
        "iss": DEFAULT_ISSUER,
        "aud": DEFAULT_AUDIENCE,
        "iat": now,
        "exp": now + 600,
        "role": "advisor",
    }
    claims.update(changes)
    return claims


def test_valid_token_yields_its_advisor(
    key: Ed25519PrivateKey, verifier: auth.TokenVerifier
) -> None:
    token = auth.issue_token(key, "ADV-1207", ttl_s=600)

    principal = verifier.authenticate(f"Bearer {token}")

    assert principal.subject == "ADV-1207"
    assert principal.role == "advisor"


def test_hs256_signed_with_the_public_key_is_refused(
    key: Ed25519PrivateKey, verifier: auth.TokenVerifier
) -> None:
    public_pem = keys.public_pem(key.public_key())
    token = _forged({"alg": "HS256", "typ": "JWT"}, _claims(), public_pem)

    with pytest.raises(auth.AuthError):
        verifier.verify(token)


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_unsigned_token_is_refused(verifier: auth.TokenVerifier, alg: str) -> None:
    with pytest.raises(auth.AuthError):
        verifier.verify(_forged({"alg": alg, "typ": "JWT"}, _claims(), None))


def test_expired_token_is_refused(key: Ed25519PrivateKey, verifier: auth.TokenVerifier) -> None:
    token = auth.issue_token(key, "ADV-1207", ttl_s=60, now=time.time() - 3600)

    with pytest.raises(auth.AuthError, match="expired"):
        verifier.verify(token)


@pytest.mark.parametrize(
    "changes",
    [{"issuer": "https://evil.example"}, {"audience": "someone-else"}],
)
def test_token_for_another_issuer_or_audience_is_refused(
    key: Ed25519PrivateKey,
    verifier: auth.TokenVerifier,
    changes: dict[str, str],
) -> None:
    token = auth.issue_token(key, "ADV-1207", ttl_s=600, **changes)

    with pytest.raises(auth.AuthError):
        verifier.verify(token)


def test_token_signed_by_another_key_is_refused(verifier: auth.TokenVerifier) -> None:
    token = auth.issue_token(Ed25519PrivateKey.generate(), "ADV-1207", ttl_s=600)

    with pytest.raises(auth.AuthError):
        verifier.verify(token)


@pytest.mark.parametrize("missing", ["sub", "exp", "iss", "aud"])
def test_token_without_a_required_claim_is_refused(
    key: Ed25519PrivateKey, verifier: auth.TokenVerifier, missing: str
) -> None:
    import jwt

    claims = _claims()
    del claims[missing]
    token = jwt.encode(claims, key, algorithm="EdDSA")

    with pytest.raises(auth.AuthError):
        verifier.verify(token)


@pytest.mark.parametrize("header", [None, "", "Basic YWRtaW46YWRtaW4=", "Bearer ", "Bearer x.y.z"])
def test_missing_or_malformed_authorization_is_refused(
    verifier: auth.TokenVerifier, header: str | None
) -> None:
    with pytest.raises(auth.AuthError):
        verifier.authenticate(header)


def test_cached_token_is_still_refused_once_expired(
    key: Ed25519PrivateKey, verifier: auth.TokenVerifier
) -> None:
    now = time.time()
    token = auth.issue_token(key, "ADV-1207", ttl_s=60, now=now)
    assert verifier.verify(token, now=now).subject == "ADV-1207"

    with pytest.raises(auth.AuthError, match="expired"):
        verifier.verify(token, now=now + 120)


def test_cache_stays_bounded(key: Ed25519PrivateKey, verifier: auth.TokenVerifier) -> None:
    tokens = [auth.issue_token(key, f"ADV-{n}", ttl_s=600) for n in range(10)]

    subjects = [verifier.verify(token).subject for token in tokens]

    assert subjects == [f"ADV-{n}" for n in range(10)]
    assert len(verifier._cache) == 4


def test_key_pair_is_created_once_with_a_private_file_mode(tmp_path: Path) -> None:
    keys_dir = tmp_path / "keys"

    first = auth.ensure_key_pair(keys_dir)
    second = auth.ensure_key_pair(keys_dir)

    private_mode = stat.S_IMODE((keys_dir / auth.PRIVATE_KEY_FILE).stat().st_mode)
    assert private_mode == 0o600
    assert keys.public_pem(first.public_key()) == keys.public_pem(second.public_key())
    public = keys.load_public_key(keys_dir / "jwt-signing.pub.pem")
    assert keys.public_pem(public) == keys.public_pem(first.public_key())
