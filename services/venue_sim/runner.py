"""Runs one simulated venue: its seeded market behind a QuickFIX acceptor, until told to stop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

from brokermesh.mesh.fix.engine import BROKER_COMP_ID
from brokermesh.mesh.refdata import Security, load_securities
from brokermesh.services.venue_sim.acceptor import VenueOrderHandler, create_venue_acceptor
from brokermesh.services.venue_sim.market import VenueMarket

_logger = logging.getLogger(__name__)


async def run_venue(
    *,
    venue: str,
    fix_port: int,
    data_dir: Path,
    seed: int,
    stop: asyncio.Event,
    client_comp_ids: Sequence[str] = (BROKER_COMP_ID,),
    securities: Iterable[Security] | None = None,
    ready: asyncio.Event | None = None,
) -> None:
    """Serve ``venue`` on ``fix_port`` until ``stop`` is set; ``ready`` is set once listening.

    The acceptor is stopped on every exit path, cancellation included.
    """
    market = VenueMarket(
        venue=venue, seed=seed, securities=load_securities() if securities is None else securities
    )
    acceptor = create_venue_acceptor(
        VenueOrderHandler(market),
        fix_port=fix_port,
        data_dir=data_dir,
        client_comp_ids=client_comp_ids,
    )
    async with acceptor:
        _logger.info("venue %s accepting FIX on port %d (seed %d)", venue, fix_port, seed)
        if ready is not None:
            ready.set()
        await stop.wait()
    _logger.info("venue %s stopped", venue)
