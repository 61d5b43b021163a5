"""A whole local platform for end-to-end tests: ``brokermesh up`` as a subprocess.

``platform`` (module scope) runs ``brokermesh up`` with every service on a
random free port offset and a private data directory. The supervisor restarts
a control plane that exits, after ``CONTROL_PLANE_RESTART_DELAY_S`` here so
that a test that kills it has an outage long enough to look at. The fixture
waits for "platform is up", then for the router to see both venues logged on
(the platform reports "up" a moment before the FIX sessions are), and stops
everything with SIGINT (SIGKILL for leftovers only) whatever happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

from brokermesh.platform.layout import Layout
from brokermesh.platform.status import grpc_health
from brokermesh.services.registry import MANIFESTS, by_name

BROKERMESH = str(Path(sys.executable).parent / "brokermesh")
CONTROL_PLANE = "control-plane"
CONTROL_PLANE_MODULE = "brokermesh.services.control_plane"
#: How long ``up`` waits before restarting a control plane that exited.
CONTROL_PLANE_RESTART_DELAY_S = 10.0
UP_TIMEOUT_S = 120.0
#: The router's log lines once it sees each venue's FIX session up.
VENUES_READY = ("venue XNAS logged on", "venue ARCA logged on")
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Platform:
    """A running platform: addresses, DSNs, tokens and its processes."""

    data_dir: Path
    offset: int
    up: subprocess.Popen[bytes]
    log: Path
    _tokens: dict[str, str] = field(default_factory=dict)

    @property
    def layout(self) -> Layout:
        return Layout(self.data_dir, self.offset)

    @property
    def base_url(self) -> str:
        port = self.layout.extra_ports(by_name("gateway"))["http"]
        return f"http://127.0.0.1:{port}"

    @property
    def dsn(self) -> str:
        """The superuser (schema owner) DSN."""
        return self.layout.owner_dsn

    @property
    def app_dsn(self) -> str:
        return self.layout.app_dsn

    @property
    def nats_url(self) -> str:
        return self.layout.nats_url

    def grpc_address(self, service: str) -> str:
        return self.layout.grpc_address(by_name(service))

    @property
    def control_address(self) -> str:
        return self.grpc_address(CONTROL_PLANE)

    def token(self, advisor: str) -> str:
        """A bearer token for ``advisor`` signed with the platform's development key."""
        if advisor not in self._tokens:
            result = subprocess.run(
                [
                    BROKERMESH,
                    "token",
                    "--advisor",
                    advisor,
                    "--keys-dir",
                    str(self.data_dir / "keys"),
                ],
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
            )
            self._tokens[advisor] = result.stdout.strip()
        return self._tokens[advisor]

    def headers(self, advisor: str = "ADV-1207") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(advisor)}"}

    def log_tail(self, lines: int = 80) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def service_processes(self, module: str) -> list[psutil.Process]:
        """The live processes ``up`` runs ``python -m`` with ``module`` or a module under it."""
        found = []
        for child in psutil.Process(self.up.pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                runs = any(a == module or a.startswith(f"{module}.") for a in child.cmdline())
                if runs and child.status() != psutil.STATUS_ZOMBIE:
                    found.append(child)
        return found

    def control_plane_serving(self, timeout_s: float = 1.0) -> bool:
        serving, _ = asyncio.run(grpc_health(self.control_address, timeout_s=timeout_s))
        return serving

    def wait_control_plane_serving(self, timeout_s: float) -> None:
        """Wait until the control plane answers SERVING (after the supervisor restarted it)."""
        deadline = time.monotonic() + timeout_s
        while not self.control_plane_serving():
            assert self.up.poll() is None, f"up exited:\n{self.log_tail()}"
            assert time.monotonic() < deadline, f"control plane not back:\n{self.log_tail()}"
            time.sleep(0.2)


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _ports(offset: int) -> list[int]:
    """Every port the platform listens on at ``offset``."""
    layout = Layout(Path("/unused"), offset)
    ports = [layout.postgres_port, layout.nats_port, layout.nats_monitor_port]
    for index, manifest in enumerate(MANIFESTS):
        ports += [
            layout.grpc_port(manifest),
            layout.metrics_port(index),
            *layout.extra_ports(manifest).values(),
        ]
    return ports


def _ephemeral_ports() -> set[int]:
    """The ports the kernel hands to outgoing connections, which can take a port between
    the check that it is free and the server's bind."""
    low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    return set(range(int(low), int(high) + 1))


def _free_offset() -> int:
    """A port offset at which every port of every service, PostgreSQL and NATS is free, and
    none is one the kernel may give an outgoing connection meanwhile."""
    ephemeral = _ephemeral_ports()
    fitting = [o for o in range(3000, 65536) if max(_ports(o)) < 65536]
    # Where the ephemeral range leaves no room (it spans nearly every port), take any.
    usable = [o for o in fitting if not ephemeral.intersection(_ports(o))] or fitting
    random.shuffle(usable)
    for offset in usable[:200]:
        if all(_port_free(port) for port in _ports(offset)):
            return offset
    raise RuntimeError("no port offset found at which every port of the platform is free")


def _wait_for_log(platform: Platform, needles: tuple[str, ...], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = platform.log.read_text(errors="replace") if platform.log.exists() else ""
        if all(needle in text for needle in needles):
            return
        if platform.up.poll() is not None:
            raise RuntimeError(
                f"brokermesh up exited with {platform.up.returncode} before "
                f"{needles!r}:\n{platform.log_tail()}"
            )
        time.sleep(0.2)
    raise RuntimeError(f"no {needles!r} after {timeout_s:g} s:\n{platform.log_tail()}")


def _postmaster(data_dir: Path) -> int | None:
    try:
        pid = int((data_dir / "postgres" / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if pid > 0 else None


def _stop(platform: Platform) -> None:
    """SIGINT ``up`` and wait; SIGKILL whatever is left."""
    try:
        leftovers = psutil.Process(platform.up.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        leftovers = []
    if platform.up.poll() is None:
        platform.up.send_signal(signal.SIGINT)
        try:
            platform.up.wait(timeout=60)
        except subprocess.TimeoutExpired:
            platform.up.kill()
            platform.up.wait(timeout=10)
    postmaster = _postmaster(platform.data_dir)
    if postmaster is not None:
        with contextlib.suppress(psutil.Error):
            leftovers.append(psutil.Process(postmaster))
    for process in leftovers:
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(leftovers, timeout=10)


@pytest.fixture(scope="module")
def platform() -> Iterator[Platform]:
    """The whole platform, up with both venues logged on; stopped after."""
    # Outside pytest's tmp tree: PostgreSQL runs as the postgres user when tests run as root.
    data_dir = Path(tempfile.mkdtemp(prefix="brokermesh-e2e-"))
    os.chmod(data_dir, 0o755)
    offset = _free_offset()
    log = data_dir / "up.log"
    with log.open("wb") as out:
        up = subprocess.Popen(
            [
                BROKERMESH,
                "up",
                "--port-offset",
                str(offset),
                "--data-dir",
                str(data_dir),
                "--restart-delay",
                str(CONTROL_PLANE_RESTART_DELAY_S),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=str(REPO),
        )
    platform = Platform(data_dir=data_dir, offset=offset, up=up, log=log)
    try:
        try:
            _wait_for_log(platform, ("platform is up",), UP_TIMEOUT_S)
            _wait_for_log(platform, VENUES_READY, 30)
        except Exception as exc:  # surface the log tail as the failure
            pytest.fail(f"platform did not start: {exc}", pytrace=False)
        yield platform
    finally:
        _stop(platform)
        shutil.rmtree(data_dir, ignore_errors=True)
