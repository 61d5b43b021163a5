"""Runs the order entry service: ``python -m brokermesh.services.order_entry``."""

from brokermesh.mesh import config, server
from brokermesh.services.order_entry.app import OrderEntryApp
from brokermesh.services.order_entry.manifest import MANIFEST
from brokermesh.services.order_entry.settings import OrderEntrySettings

settings = config.load(OrderEntrySettings, MANIFEST.name)
server.run(MANIFEST, settings, lambda: OrderEntryApp(settings))
