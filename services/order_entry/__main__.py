"""Runs the order entry service: ``python -m brokermesh.services.order_entry``."""

from brokermesh.mesh import server
from brokermesh.services.order_entry.app import OrderEntryApp
from brokermesh.services.order_entry.manifest import MANIFEST
from brokermesh.services.order_entry.settings import OrderEntrySettings
from brokermesh.services.registry import load_settings

settings = load_settings(OrderEntrySettings, MANIFEST)
server.run(MANIFEST, settings, lambda: OrderEntryApp(settings))
