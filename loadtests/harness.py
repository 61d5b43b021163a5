"""Find, start and stop a local brokermesh platform, provision its load-test account, and
measure its CPU time."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import psutil

from brokermesh.platform.layout import HOST, Layout
from brokermesh.services.registry import MANIFESTS
from loadtests import orders

READY_LINE = "platform is up"
SERVICE_MODULE_PREFIX = "brokermesh.services."
BIN = Path(sys.executable).parent


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Where a platform started with ``port_offset`` and ``data_dir`` listens."""

    data_dir: Path
    port_offset: int

    @property
    def layout(self) -> Layout:
        return Layout(self.data_dir, self.port_offset)

    @property
    def gateway_url(self) -> str:
        return f"http://{HOST}:{8080 + self.port_offset}"

    def grpc_address(self, service: str) -> str:
        manifest = next(m for m in MANIFESTS if m.name == service)
        return self.layout.grpc_address(manifest)

    def metrics_url(self, service: str) -> str:
        index = next(i for i, m in enumerate(MANIFESTS) if m.name == service)
        return f"http://{HOST}:{self.layout.metrics_port(index)}/metrics"

    def all_metrics_urls(self) -> list[str]:
        return [self.metrics_url(m.name) for m in MANIFESTS]


def mint_token(endpoints: Endpoints, advisor: str = "ADV-1207") -> str:
    """A bearer token for ``advisor``, signed with the platform's keys."""
    out = subprocess.run(
        [
            str(BIN / "brokermesh"),
            "token",
            "--advisor",
            advisor,
            "--keys-dir",
            str(endpoints.data_dir / "keys"),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


_PROVISION = (
    """
    INSERT INTO accounts (account_id, name, status, cash, permissions)
    VALUES ($1, 'Load test', 'ACTIVE', $2, '{EQUITY}')
    ON CONFLICT (account_id) DO UPDATE SET status = 'ACTIVE', cash = EXCLUDED.cash
    """,
    """
    INSERT INTO advisor_accounts (advisor_id, account_id) VALUES ($1, $2)
    ON CONFLICT DO NOTHING
    """,
    """
    INSERT INTO positions (account_id, symbol, quantity)
    SELECT $1, symbol, $2 FROM unnest($3::text[]) AS symbol
    ON CONFLICT (account_id, symbol) DO UPDATE SET quantity = EXCLUDED.quantity
    """,
)
#: Longest interval at which the services re-read accounts (OMS and risk books: 3 s) and
#: assignments (gateway entitlements: 5 s), with a margin.
BOOKS_REFRESH_S = 7.0


def provision(endpoints: Endpoints) -> None:
    """Give the load tests their own funded account, assigned to their advisor, and wait
    until the services have read it; idempotent."""
    asyncio.run(_provision(endpoints.layout.owner_dsn))
    time.sleep(BOOKS_REFRESH_S)


async def _provision(dsn: str) -> None:
    accounts, assignment, positions = _PROVISION
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        async with conn.transaction():
            await conn.execute(accounts, orders.ACCOUNT, orders.ACCOUNT_CASH)
            await conn.execute(assignment, orders.ADVISOR, orders.ACCOUNT)
            symbols = [symbol for symbol, _ in orders.SYMBOLS]
            await conn.execute(positions, orders.ACCOUNT, orders.ACCOUNT_SHARES, symbols)
    finally:
        await conn.close()


class Platform:
    """``brokermesh up`` as a subprocess: :meth:`start` waits for the table, :meth:`stop`
    sends SIGINT (as Ctrl-C would) and waits for every service to exit."""

    def __init__(self, endpoints: Endpoints, log_path: Path) -> None:
        self.endpoints = endpoints
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 180.0) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("wb")
        cmd = [
            str(BIN / "brokermesh"),
            "up",
            "--port-offset",
            str(self.endpoints.port_offset),
            "--data-dir",
            str(self.endpoints.data_dir),
            # Services write their own log files, as under a container runtime, so the
            # supervisor's line relay (a development convenience) costs the figures nothing.
            "--log-dir",
            str(self.endpoints.data_dir / "logs"),
        ]
        self.proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if READY_LINE in self.log_path.read_text(errors="replace"):
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"brokermesh up exited early; see {self.log_path}")
            time.sleep(0.5)
        raise RuntimeError(f"platform not up after {timeout_s:.0f}s; see {self.log_path}")

    def stop(self, timeout_s: float = 60.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGINT)
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid


def process_tree(root_pid: int) -> list[psutil.Process]:
    """``root_pid`` and all its descendants that are still alive."""
    root = psutil.Process(root_pid)
    return [root, *root.children(recursive=True)]


def platform_processes(root_pid: int, data_dir: Path) -> list[psutil.Process]:
    """The ``brokermesh up`` tree plus PostgreSQL, whose postmaster runs detached from it
    (found through ``postmaster.pid`` in the data directory)."""
    procs = {p.pid: p for p in process_tree(root_pid)}
    try:
        postmaster = int((data_dir / "postgres" / "postmaster.pid").read_text().split()[0])
        procs.update({p.pid: p for p in process_tree(postmaster)})
    except (OSError, ValueError, IndexError, psutil.Error):
        pass
    return list(procs.values())


def cpu_snapshot(processes: list[psutil.Process]) -> dict[int, float]:
    """User+system CPU seconds (children included) of each process, by pid."""
    snap = {}
    for proc in processes:
        try:
            times = proc.cpu_times()
        except psutil.Error:
            continue
        snap[proc.pid] = times.user + times.system
    return snap


def process_label(proc: psutil.Process) -> str:
    """What a platform process is: the service's name for ``python -m
    brokermesh.services.<name>``, ``supervisor`` for ``brokermesh up`` itself, otherwise
    the executable's name (``nats-server``, ``postgres``)."""
    try:
        cmdline = proc.cmdline()
        name = proc.name()
    except psutil.Error:
        return "gone"
    for arg in cmdline:
        if arg.startswith(SERVICE_MODULE_PREFIX):
            return arg.removeprefix(SERVICE_MODULE_PREFIX).split(".")[0].replace("_", "-")
    if any(Path(arg).name == "brokermesh" for arg in cmdline[:2]):
        return "supervisor"
    return name


def cpu_by_label(
    before: dict[int, float], after: dict[int, float], labels: dict[int, str]
) -> dict[str, float]:
    """CPU seconds spent between two snapshots, summed per process label."""
    out: dict[str, float] = {}
    for pid, cpu in after.items():
        label = labels.get(pid, "other")
        out[label] = out.get(label, 0.0) + max(0.0, cpu - before.get(pid, 0.0))
    return out


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds spent between two snapshots by the processes alive at the second one."""
    return sum(max(0.0, cpu - before.get(pid, 0.0)) for pid, cpu in after.items())
