"""Entry point: ``python -m brokermesh.services.ledger`` runs the ledger until SIGTERM."""

from __future__ import annotations

from brokermesh.mesh.config import load
from brokermesh.mesh.server import run
from brokermesh.services.ledger.manifest import MANIFEST
from brokermesh.services.ledger.service import LedgerApp, LedgerSettings


def main() -> None:
    settings = load(LedgerSettings, MANIFEST.name)
    run(MANIFEST, settings, lambda: LedgerApp(settings))


if __name__ == "__main__":
    main()
