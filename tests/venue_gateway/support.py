"""The pieces around a venue gateway under test: a venue, trade capture, the gateway process.

The gateway runs as its own process, ``python -m brokermesh.services.venue_gateway``
configured only through the environment, so a test can kill it outright. A
simulated venue (a real QuickFIX acceptor) and trade capture (its production
app and server bootstrap, reconciler included) run in the test's own loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from brokermesh.mesh import server
from brokermesh.services.trade_capture.app import TradeCaptureApp
from brokermesh.services.trade_capture.manifest import MANIFEST as TRADE_CAPTURE
from brokermesh.services.trade_capture.settings import TradeCaptureSettings
from brokermesh.services.venue_sim.runner import run_venue

T = TypeVar("T")

#: Seconds a freshly started gateway gets to report SERVING.
START_TIMEOUT_S = 45.0


def free_port() -> int:
    """A port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


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
    """The venue gateway as a process of its own, with its data (FIX store, journal) kept."""

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
        self.port = port
        self.address = f"127.0.0.1:{port}"
        self.data_dir = data_dir
        self._env = {
            "BROKERMESH_PORT": str(port),
            "BROKERMESH_DATA_DIR": str(data_dir),
            "BROKERMESH_NATS_URL": nats_url,
            "BROKERMESH_UPSTREAMS": f"trade-capture=127.0.0.1:{trade_capture_port}",
            "BROKERMESH_VENUE_GATEWAY_VENUE_FIX_PORTS": ",".join(
                f"venue-{venue.lower()}=127.0.0.1:{fix_port}"
                for venue, fix_port in venue_ports.items()
            ),
            "BROKERMESH_VENUE_GATEWAY_LOGON_TIMEOUT_S": str(logon_timeout_s),
            "BROKERMESH_VENUE_GATEWAY_HEARTBEAT_S": "2",
        }
        self._log_path = data_dir / "venue-gateway.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def journal_path(self) -> Path:
        return self.data_dir / "journal" / "executions.sqlite3"

    async def start(self) -> None:
        """Start the process and wait until its health check reports SERVING."""
        self._process = self._spawn()
        await self._wait_serving()

    async def kill(self) -> None:
        """SIGKILL: the process gets no chance to finish anything."""
        await asyncio.to_thread(self._end, signal.SIGKILL)

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL if it lingers; safe to call when it never started."""
        await asyncio.to_thread(self._end, signal.SIGTERM)

    def pause(self) -> None:
        """SIGSTOP: the process hangs, its sockets open, answering nothing."""
        if self._process is not None:
            self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self._log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def _spawn(self) -> subprocess.Popen[bytes]:
        # Only the settings under test: stray BROKERMESH_* variables must not leak in.
        env = {k: v for k, v in os.environ.items() if not k.startswith("BROKERMESH_")}
        env.update(self._env)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self._log_path.open("ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "brokermesh.services.venue_gateway"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def _end(self, how: signal.Signals) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(how)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    async def _wait_serving(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        async with grpc.aio.insecure_channel(self.address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                if self._process is None or self._process.poll() is not None:
                    raise RuntimeError(f"venue gateway exited early:\n{self.log_tail()}")
                try:
                    reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=0.5)
                except grpc.aio.AioRpcError:
                    await asyncio.sleep(0.1)
                    continue
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
                await asyncio.sleep(0.1)
        raise RuntimeError(
            f"venue gateway not SERVING after {START_TIMEOUT_S} s:\n{self.log_tail()}"
        )


async def eventually(
    probe: Callable[[], Awaitable[T]],
    accept: Callable[[T], bool],
    *,
    timeout_s: float = 20.0,
    interval_s: float = 0.1,
) -> T:
    """Call ``probe`` until ``accept`` likes its result; the last result after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = await probe()
        if accept(result) or time.monotonic() > deadline:
            return result
        await asyncio.sleep(interval_s)
