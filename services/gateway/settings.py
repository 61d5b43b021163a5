"""Settings of the REST gateway: the HTTP listener, token verification and entitlements."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from brokermesh.mesh.config import ServiceSettings

#: Issuer and audience that the development token issuer writes and the gateway expects.
DEFAULT_ISSUER = "https://auth.brokermesh.local"
DEFAULT_AUDIENCE = "brokermesh-api"
#: File name of the public half of the token-signing key pair.
PUBLIC_KEY_FILE = "jwt-signing.pub.pem"


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class GatewaySettings(ServiceSettings):
    """Gateway settings; every field can be set as ``BROKERMESH_GATEWAY_<FIELD>``."""

    #: Interface the HTTP/JSON API binds to.
    http_host: str = "127.0.0.1"
    #: HTTP port; 0 picks a free one (tests).
    http_port: int = 8080
    #: PEM file with the Ed25519 public key that verifies bearer tokens. Empty means
    #: ``<data_dir>/../keys/jwt-signing.pub.pem``, where ``brokermesh token`` writes it
    #: when the platform gives each service ``.brokermesh/<service>`` as its data_dir.
    jwt_public_key_path: Path = Path()
    #: Required ``iss`` claim.
    jwt_issuer: str = DEFAULT_ISSUER
    #: Required ``aud`` claim.
    jwt_audience: str = DEFAULT_AUDIENCE
    #: Seconds between reloads of the advisor-to-account assignments.
    entitlements_refresh_s: float = 5.0
    #: API requests served at once; more are answered 429 OVERLOADED at once, before the
    #: token is even read. Order entry sheds beyond its own limit as well.
    max_in_flight: int = dataclasses.field(default=16, metadata={"min": 0})

    def __post_init__(self) -> None:
        if self.jwt_public_key_path == Path():
            derived = self.data_dir.parent / "keys" / PUBLIC_KEY_FILE
            object.__setattr__(self, "jwt_public_key_path", derived)
