"""Process entry point of the OMS: ``python -m brokermesh.services.oms``."""

from __future__ import annotations

from brokermesh.mesh.config import load
from brokermesh.mesh.server import run
from brokermesh.services.oms.manifest import MANIFEST
from brokermesh.services.oms.service import OmsApp, OmsSettings


def main() -> None:
    """Load the OMS settings from the environment and serve until SIGTERM."""
    settings = load(OmsSettings, MANIFEST.name)
    run(MANIFEST, settings, lambda: OmsApp(settings))


if __name__ == "__main__":
    main()
