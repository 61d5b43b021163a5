"""Runs the venue gateway: ``python -m brokermesh.services.venue_gateway``."""

from brokermesh.mesh import config, server
from brokermesh.services.venue_gateway.app import VenueGatewayApp
from brokermesh.services.venue_gateway.manifest import MANIFEST
from brokermesh.services.venue_gateway.settings import VenueGatewaySettings

settings = config.load(VenueGatewaySettings, MANIFEST.name)
server.run(MANIFEST, settings, lambda: VenueGatewayApp(settings))
