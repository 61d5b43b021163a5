"""The pieces around a venue gateway under test: a venue, trade capture, the gateway process.

The gateway runs as its own process, ``python -m brokermesh.services.venue_gateway``
configured only through the environment, so a test can kill it outright. A
simulated venue (a real QuickFIX acceptor) and trade capture (its production
app and server bootstrap, reconciler included) run in the test's own loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from brokermesh.mesh import server
from brokermesh.services.trade_capture.app import TradeCaptureApp
from brokermesh.services.trade_capture.manifest import MANIFEST as TRADE_CAPTURE
from brokermesh.services.trade_capture.settings import TradeCaptureSettings
from brokermesh.services.venue_sim.runner import run_venue
from tests.processes import ServiceProcess, free_port


@contextlib.asynccontextmanager
async def a_venue(data_dir: Path, name: str = "XNAS", *, seed: int = 7) -> AsyncIterator[int]:
    """Run a simulated venue in this loop until the block exits; yields its FIX port."""
    port, stop, ready = free_port(), asyncio.Event(), asyncio.Event()
    venue = asyncio.create_task(
        run_venue(
            venue=name, fix_port=port, data_dir=data_dir / name, seed=seed, stop=stop, ready=ready
        )
    )
    try:
        listening = asyncio.create_task(ready.wait())
        await asyncio.wait([venue, listening], timeout=10, return_when=asyncio.FIRST_COMPLETED)
        listening.cancel()
        if venue.done():
            venue.result()
        if not ready.is_set():
            raise RuntimeError(f"venue {name} did not start listening")
        yield port
    finally:
        stop.set()
        await venue


class TradeCaptureServer:
    """Trade capture on a fixed port, started and stopped at will."""

    def __init__(
        self,
        *,
        database_url: str,
        venue_gateway_port: int,
        data_dir: Path,
        reconcile_after_s: float = 1.0,
    ) -> None:
        self.port = free_port()
        self._settings = TradeCaptureSettings(
            port=self.port,
            data_dir=data_dir,
            database_url=database_url,
            upstreams=f"venue-gateway=127.0.0.1:{venue_gateway_port}",
            reconcile_after_s=reconcile_after_s,
            reconcile_interval_s=0.25,
        )
        self._running: tuple[server.Running, TradeCaptureApp] | None = None

    async def start(self) -> None:
        app = TradeCaptureApp(self._settings)
        self._running = (await server.start(TRADE_CAPTURE, self._settings, app), app)

    async def stop(self) -> None:
        running, self._running = self._running, None
        if running is not None:
            await server.stop(running[0], running[1], grace_s=1.0)


class VenueGatewayProcess:
    """The venue gateway as a process of its own, with its data (FIX store, journal) kept.

    Its lifecycle is awaitable: trade capture runs in the test's own loop and has to go on
    serving while the gateway starts and stops.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int,
        nats_url: str,
        trade_capture_port: int,
        venue_ports: dict[str, int],
        logon_timeout_s: float = 10.0,
    ) -> None:
        env = {
            "BROKERMESH_NATS_URL": nats_url,
            "BROKERMESH_UPSTREAMS": f"trade-capture=127.0.0.1:{trade_capture_port}",
            "BROKERMESH_VENUE_GATEWAY_VENUE_FIX_PORTS": ",".join(
                f"venue-{venue.lower()}=127.0.0.1:{fix_port}"
                for venue, fix_port in venue_ports.items()
            ),
            "BROKERMESH_VENUE_GATEWAY_LOGON_TIMEOUT_S": str(logon_timeout_s),
            "BROKERMESH_VENUE_GATEWAY_HEARTBEAT_S": "2",
        }
        self._process = ServiceProcess(
            "brokermesh.services.venue_gateway",
            data_dir,
            env,
            port=port,
            log_name="venue-gateway.log",
        )
        self.address = self._process.address

    @property
    def journal_path(self) -> Path:
        return self._process.data_dir / "journal" / "executions.sqlite3"

    async def start(self) -> None:
        """Start the process and wait until its health check reports SERVING."""
        await asyncio.to_thread(self._process.start)

    async def kill(self) -> None:
        """SIGKILL: the process gets no chance to finish anything."""
        await asyncio.to_thread(self._process.kill)

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL if it lingers; safe to call when it never started."""
        await asyncio.to_thread(self._process.stop)

    def pause(self) -> None:
        """SIGSTOP: the process hangs, its sockets open, answering nothing."""
        self._process.pause()

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        self._process.resume()

    def log_tail(self, lines: int = 60) -> str:
        return self._process.log_tail(lines)
