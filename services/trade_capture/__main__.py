"""Runs the trade capture service: ``python -m brokermesh.services.trade_capture``."""

from brokermesh.mesh import server
from brokermesh.mesh.config import ServiceSettings
from brokermesh.services.registry import load_settings
from brokermesh.services.trade_capture.app import TradeCaptureApp
from brokermesh.services.trade_capture.manifest import MANIFEST

settings = load_settings(ServiceSettings, MANIFEST)
server.run(MANIFEST, settings, lambda: TradeCaptureApp(settings))
