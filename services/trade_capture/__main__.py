"""Runs the trade capture service: ``python -m brokermesh.services.trade_capture``."""

from brokermesh.mesh import server
from brokermesh.services.registry import load_settings
from brokermesh.services.trade_capture.app import TradeCaptureApp
from brokermesh.services.trade_capture.manifest import MANIFEST
from brokermesh.services.trade_capture.settings import TradeCaptureSettings

settings = load_settings(TradeCaptureSettings, MANIFEST)
server.run(MANIFEST, settings, lambda: TradeCaptureApp(settings))
