"""Process entry point of the router: ``python -m brokermesh.services.router``."""

from __future__ import annotations

from brokermesh.mesh.config import load
from brokermesh.mesh.server import run
from brokermesh.services.router.manifest import MANIFEST
from brokermesh.services.router.service import RouterApp, RouterSettings


def main() -> None:
    """Load the router settings from the environment and serve until SIGTERM."""
    settings = load(RouterSettings, MANIFEST.name)
    run(MANIFEST, settings, lambda: RouterApp(settings))


if __name__ == "__main__":
    main()
