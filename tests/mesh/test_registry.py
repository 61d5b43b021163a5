"""The registry's services, and the settings catalog the configuration checks against."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from brokermesh.mesh.config import KNOWN_SETTINGS, ServiceSettings, load
from brokermesh.mesh.manifest import ServiceManifest
from brokermesh.platform.layout import Layout
from brokermesh.platform.supervisor import process_env
from brokermesh.services.control_plane.service import ControlPlaneSettings
from brokermesh.services.gateway.settings import GatewaySettings
from brokermesh.services.ledger.service import LedgerSettings
from brokermesh.services.oms.service import OmsSettings
from brokermesh.services.order_entry.settings import OrderEntrySettings
from brokermesh.services.registry import MANIFESTS
from brokermesh.services.risk.service import RiskSettings
from brokermesh.services.router.service import RouterSettings
from brokermesh.services.venue_gateway.settings import VenueGatewaySettings
from brokermesh.services.venue_sim.app import VenueSettings

#: The settings class each service's entry point loads.
SETTINGS: dict[str, type[ServiceSettings]] = {
    "control-plane": ControlPlaneSettings,
    "venue-xnas": VenueSettings,
    "venue-arca": VenueSettings,
    "ledger": LedgerSettings,
    "trade-capture": ServiceSettings,
    "venue-gateway": VenueGatewaySettings,
    "oms": OmsSettings,
    "risk": RiskSettings,
    "router": RouterSettings,
    "order-entry": OrderEntrySettings,
    "gateway": GatewaySettings,
}


def test_every_service_of_the_registry_has_its_settings_class_listed_here() -> None:
    assert sorted(m.name for m in MANIFESTS) == sorted(SETTINGS)


def test_the_settings_catalog_is_every_field_of_every_settings_class() -> None:
    fields = {f.name for cls in SETTINGS.values() for f in dataclasses.fields(cls)}

    assert sorted(fields - KNOWN_SETTINGS) == [], "add them to mesh.config.KNOWN_SETTINGS"
    assert sorted(KNOWN_SETTINGS - fields) == [], "remove them from mesh.config.KNOWN_SETTINGS"


@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda m: m.name)
def test_the_environment_the_platform_gives_a_service_loads_its_settings(
    manifest: ServiceManifest,
) -> None:
    layout = Layout(Path("/srv/bm"), 100)
    environ = process_env(manifest, layout, {"BROKERMESH_LOG_LEVEL": "DEBUG"})

    settings = load(SETTINGS[manifest.name], manifest.name, environ=environ)

    assert settings.port == layout.grpc_port(manifest)
    assert settings.log_level == "DEBUG"
