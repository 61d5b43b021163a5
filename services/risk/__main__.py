"""Process entry point of the risk service: ``python -m brokermesh.services.risk``."""

from __future__ import annotations

from brokermesh.mesh.config import load
from brokermesh.mesh.server import run
from brokermesh.services.risk.manifest import MANIFEST
from brokermesh.services.risk.service import RiskApp, RiskSettings


def main() -> None:
    """Load the risk settings from the environment and serve until SIGTERM."""
    settings = load(RiskSettings, MANIFEST.name)
    run(MANIFEST, settings, lambda: RiskApp(settings))


if __name__ == "__main__":
    main()
