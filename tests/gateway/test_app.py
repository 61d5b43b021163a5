"""Gateway start-up checks that need no upstream."""

from __future__ import annotations

from pathlib import Path

import pytest

from brokermesh.mesh.errors import ConfigError
from brokermesh.services.gateway.app import GatewayApp
from brokermesh.services.gateway.settings import GatewaySettings


@pytest.mark.asyncio
async def test_missing_verification_key_stops_start_naming_the_setting(tmp_path: Path) -> None:
    app = GatewayApp(GatewaySettings(jwt_public_key_path=tmp_path / "absent.pub.pem"))

    with pytest.raises(ConfigError) as caught:
        await app.start()

    assert caught.value.field == "jwt_public_key_path"
    assert "brokermesh token" in caught.value.message


def test_key_path_defaults_beside_the_service_data_dirs() -> None:
    settings = GatewaySettings(data_dir=Path(".brokermesh/gateway"))

    assert settings.jwt_public_key_path == Path(".brokermesh/keys/jwt-signing.pub.pem")
    assert settings.http_port == 8080


def test_http_port_comes_from_the_gateway_environment() -> None:
    from brokermesh.mesh.config import load

    settings = load(GatewaySettings, "gateway", environ={"BROKERMESH_GATEWAY_HTTP_PORT": "9090"})

    assert settings.http_port == 9090
