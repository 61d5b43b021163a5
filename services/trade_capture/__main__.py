"""Runs the trade capture service: ``python -m brokermesh.services.trade_capture``."""

from brokermesh.mesh import config, server
from brokermesh.mesh.config import ServiceSettings
from brokermesh.services.trade_capture.app import TradeCaptureApp
from brokermesh.services.trade_capture.manifest import MANIFEST

settings = config.load(ServiceSettings, MANIFEST.name)
server.run(MANIFEST, settings, lambda: TradeCaptureApp(settings))
