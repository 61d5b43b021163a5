"""Runs one simulated venue, chosen by ``BROKERMESH_SERVICE`` (venue-xnas or venue-arca)."""

import os

from brokermesh.mesh import server
from brokermesh.services.registry import by_name, load_settings
from brokermesh.services.venue_sim.app import VenueApp, VenueSettings

manifest = by_name(os.environ.get("BROKERMESH_SERVICE", "venue-xnas"))
settings = load_settings(VenueSettings, manifest)
server.run(
    manifest, settings, lambda: VenueApp(settings, manifest.name.removeprefix("venue-").upper())
)
