"""Entry point: ``python -m brokermesh.services.control_plane``."""

from __future__ import annotations

import functools

from brokermesh.mesh.config import load
from brokermesh.mesh.server import run
from brokermesh.services.control_plane.manifest import MANIFEST
from brokermesh.services.control_plane.service import ControlPlaneSettings, build


def main() -> None:
    """Load settings from the environment and serve until SIGINT or SIGTERM."""
    settings = load(ControlPlaneSettings, MANIFEST.name)
    run(MANIFEST, settings, functools.partial(build, settings))


if __name__ == "__main__":
    main()
