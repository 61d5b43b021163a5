"""Runs the venue gateway: ``python -m brokermesh.services.venue_gateway``."""

from brokermesh.mesh import server
from brokermesh.services.registry import load_settings
from brokermesh.services.venue_gateway.app import VenueGatewayApp
from brokermesh.services.venue_gateway.manifest import MANIFEST
from brokermesh.services.venue_gateway.settings import VenueGatewaySettings

settings = load_settings(VenueGatewaySettings, MANIFEST)
server.run(MANIFEST, settings, lambda: VenueGatewayApp(settings))
