"""``brokermesh up``: PostgreSQL, NATS, migrations and JetStream assets, then every service.

PostgreSQL (via pg_ctl) and NATS (a subprocess of ours) start first and stop
last; they are not honcho processes because the services depend on them and
must stop before them. The services run under honcho, one process each, with
their output prefixed by name. A watcher thread polls every service's gRPC
health until all report SERVING, then prints the platform's addresses; when
one is still not serving at the deadline, everything stops and ``up`` exits
non-zero. SIGINT or SIGTERM stops the services (SIGTERM, then SIGKILL after a
grace period), then NATS, then PostgreSQL.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
import shlex
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import NoReturn

from honcho.manager import KILL_WAIT, SYSTEM_PRINTER_NAME, Manager
from honcho.printer import Message, Printer

from brokermesh.mesh.manifest import ServiceManifest
from brokermesh.platform import PlatformError
from brokermesh.platform.layout import HOST, OWNER_ROLE, Layout, clear_state, write_state
from brokermesh.platform.migrate import apply_migrations
from brokermesh.platform.nats import LocalNats
from brokermesh.platform.postgres import LocalPostgres
from brokermesh.platform.status import (
    Targets,
    check_all,
    format_table,
    grpc_health,
    service_targets,
)
from brokermesh.services.gateway.auth import ensure_key_pair
from brokermesh.services.registry import MANIFESTS

_LOGGER = logging.getLogger(__name__)

ENV_PREFIX = "BROKERMESH_"
#: Drain time the supervisor gives services unless the caller's environment sets one:
#: honcho sends SIGKILL KILL_WAIT (5) seconds after the first service stopped, and a
#: service needs the rest of that for its own ``stop``.
SERVICE_SHUTDOWN_GRACE_S = "3"
#: SIGKILL everything this long after a stop was requested, even if no service has
#: exited yet (honcho only starts its own kill clock after one has).
KILL_BACKSTOP_S = KILL_WAIT + 5


@dataclass(frozen=True, slots=True)
class UpOptions:
    """What ``brokermesh up`` was asked to run."""

    data_dir: Path
    port_offset: int = 0
    #: Names of the services to start; empty starts all of them.
    only: tuple[str, ...] = ()
    health_timeout_s: float = 60.0


def select_manifests(
    only: Sequence[str], manifests: Sequence[ServiceManifest] = MANIFESTS
) -> tuple[ServiceManifest, ...]:
    """The manifests named in ``only`` (all when empty), in start order."""
    if not only:
        return tuple(manifests)
    known = {m.name for m in manifests}
    unknown = sorted(set(only) - known)
    if unknown:
        raise PlatformError(
            f"unknown service(s): {', '.join(unknown)}; "
            f"known: {', '.join(m.name for m in manifests)}"
        )
    return tuple(m for m in manifests if m.name in only)


def env_name(service: str) -> str:
    """``venue-xnas`` -> ``VENUE_XNAS``, as mesh.config expects service prefixes."""
    return service.upper().replace("-", "_")


def service_env(
    manifest: ServiceManifest, layout: Layout, manifests: Sequence[ServiceManifest] = MANIFESTS
) -> dict[str, str]:
    """The BROKERMESH_* variables one service process gets; a pure function of its inputs.

    Every port is shifted by the layout's offset, the metrics port follows the
    service's position in the registry (stable under ``--only``), and the
    upstream list names every service so callers find their callees wherever
    they run.
    """
    by_name = {m.name: m for m in manifests}
    env = {
        "BROKERMESH_SERVICE": manifest.name,
        "BROKERMESH_PORT": str(layout.grpc_port(manifest)),
        "BROKERMESH_METRICS_PORT": str(layout.metrics_port(list(manifests).index(manifest))),
        "BROKERMESH_DATA_DIR": str(layout.service_data_dir(manifest)),
        "BROKERMESH_NATS_URL": layout.nats_url,
        "BROKERMESH_DATABASE_URL": layout.app_dsn,
        "BROKERMESH_UPSTREAMS": ",".join(f"{m.name}={layout.grpc_address(m)}" for m in manifests),
    }
    for purpose, port in layout.extra_ports(manifest).items():
        env[f"{ENV_PREFIX}{env_name(manifest.name)}_{purpose.upper()}_PORT"] = str(port)
    if manifest.fix_peers:
        env["BROKERMESH_VENUE_FIX_PORTS"] = ",".join(
            f"{peer}={HOST}:{layout.extra_ports(by_name[peer])['fix']}"
            for peer in manifest.fix_peers
        )
    return env


def process_env(
    manifest: ServiceManifest, layout: Layout, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The full environment of a service process: the caller's, our defaults, then ours."""
    inherited = dict(os.environ if base is None else base)
    defaults = {"BROKERMESH_SHUTDOWN_GRACE_S": SERVICE_SHUTDOWN_GRACE_S}
    # Unbuffered, so log lines reach honcho's printer as they are written.
    return {**defaults, **inherited, **service_env(manifest, layout), "PYTHONUNBUFFERED": "1"}


def service_command(manifest: ServiceManifest) -> str:
    """The shell command honcho runs; ``exec`` so the signal reaches Python, not a shell."""
    return "exec " + shlex.join([sys.executable, "-m", manifest.entry_module])


def up(options: UpOptions) -> int:
    """Run the platform until interrupted; returns the process exit code."""
    layout = Layout(options.data_dir.resolve(), options.port_offset)
    manifests = select_manifests(options.only)
    if not manifests:
        raise PlatformError("no services selected")
    _check_ports(layout, manifests)

    pg = LocalPostgres(layout.postgres_dir, port=layout.postgres_port)
    nats = LocalNats(layout.nats_dir, port=layout.nats_port, monitor_port=layout.nats_monitor_port)
    # A cluster that was already running belongs to someone else; leave it running.
    pg_was_running = pg.is_running()
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGTERM, _raise_system_exit)
    try:
        pg.start()
        nats.start()
        asyncio.run(_prepare(pg, nats, layout, manifests))
        write_state(layout, [m.name for m in manifests])
        return _run_services(layout, manifests, options.health_timeout_s)
    finally:
        # A second Ctrl-C must not abandon the cleanup half-way.
        for sig in previous:
            signal.signal(sig, _already_stopping)
        _stop_infrastructure(pg, nats, stop_postgres=not pg_was_running)
        clear_state(layout)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _stop_infrastructure(pg: LocalPostgres, nats: LocalNats, *, stop_postgres: bool) -> None:
    """The services are down by now: NATS, then PostgreSQL, the reverse of the start."""
    try:
        nats.stop()
    finally:
        if stop_postgres:
            pg.stop()


async def _prepare(
    pg: LocalPostgres, nats: LocalNats, layout: Layout, manifests: Sequence[ServiceManifest]
) -> None:
    """Database, schema and reference data, then the JetStream streams and buckets."""
    await pg.ensure_database()
    report = await apply_migrations(pg.dsn(OWNER_ROLE))
    _LOGGER.info(
        "migrations: %d applied, %d already applied; %d securities loaded",
        len(report.applied),
        len(report.already_applied),
        report.securities,
    )
    outcomes = await nats.ensure_assets()
    _LOGGER.info(
        "JetStream assets: %s", ", ".join(f"{name} {outcome}" for name, outcome in outcomes.items())
    )
    for manifest in manifests:
        layout.service_data_dir(manifest).mkdir(parents=True, exist_ok=True)

    # The local development token issuer's key pair: the gateway verifies
    # with the public half, `brokermesh token` signs with the private one.
    ensure_key_pair(layout.data_dir / "keys")


def _run_services(
    layout: Layout, manifests: Sequence[ServiceManifest], health_timeout_s: float
) -> int:
    """Run ``manifests`` under honcho until they stop; the exit code ``up`` returns."""
    watcher = _HealthWatcher(layout, manifests, timeout_s=health_timeout_s)
    manager = _Manager(Printer(sys.stdout), on_started=watcher.start)
    watcher.manager = manager
    for manifest in manifests:
        manager.add_process(
            manifest.name,
            service_command(manifest),
            env=process_env(manifest, layout),
            cwd=str(Path.cwd()),
        )
    try:
        manager.loop()
    finally:
        manager.finish()
        watcher.stop()

    if watcher.unhealthy:
        return 1
    code = manager.returncode
    if code is None:
        return 0
    if code < 0:
        # A service killed by a signal: report it the way a shell would.
        return 128 - code
    # A service that exited by itself, even with 0, is a failed platform.
    return 1 if code == 0 and not manager.signalled else code


class _Manager(Manager):
    """honcho's Manager, plus a hook once all processes are forked and a stop enforcer.

    honcho learns each child's pid from its event queue, so a stop requested right
    after the start could miss a child whose pid it has not read yet; and it starts
    its SIGKILL clock only once some child has exited. The enforcer thread closes
    both gaps. Relies on honcho 2.0.0 internals (``_start``, ``_killall``,
    ``_processes``, ``_terminating``), pinned in pyproject.
    """

    def __init__(self, printer: Printer, *, on_started: Callable[[], None]) -> None:
        super().__init__(printer)
        self._on_started = on_started
        self._finished = threading.Event()
        self._missed = threading.Event()
        self.signalled = False

    def _start(self) -> None:
        super()._start()
        # Threads start only after honcho forked its process runners.
        self._on_started()

    def terminate(self) -> None:
        # honcho's signal handler sets these codes just before calling terminate().
        if self.returncode in (130, 143):
            self.signalled = True
        first = not self._terminating
        super().terminate()
        if first:
            threading.Thread(target=self._enforce_stop, name="stop-enforcer", daemon=True).start()

    def _killall(self, force: bool = False) -> None:
        for name, proc in list(self._processes.items()):
            if "returncode" in proc:
                continue
            if "pid" not in proc:
                self._missed.set()
                continue
            signame = "SIGKILL" if force else "SIGTERM"
            self._system_print(f"sending {signame} to {name} (pid {proc['pid']})\n")
            if force:
                self._procmgr.kill(proc["pid"])
            else:
                self._procmgr.terminate(proc["pid"])

    def _enforce_stop(self) -> None:
        began = time.monotonic()
        while not self._all_started() and time.monotonic() - began < KILL_BACKSTOP_S:
            time.sleep(0.05)
        if self._missed.is_set():
            self._missed.clear()
            self._killall()
        if not self._finished.wait(max(0.0, KILL_BACKSTOP_S - (time.monotonic() - began))):
            self.kill()

    def finish(self) -> None:
        """Called once ``loop`` returned: nothing is left to enforce."""
        self._finished.set()

    def say(self, text: str) -> None:
        """Print through honcho's event queue, so lines never interleave with services'."""
        self.events.put(
            Message(
                type="line",
                data=text + "\n",
                time=datetime.datetime.now(),
                name=SYSTEM_PRINTER_NAME,
                colour=None,
            )
        )


class _HealthWatcher:
    """Waits in a thread until every service reports SERVING, then prints the table."""

    def __init__(
        self, layout: Layout, manifests: Sequence[ServiceManifest], *, timeout_s: float
    ) -> None:
        self.layout = layout
        self.manifests = tuple(manifests)
        self.timeout_s = timeout_s
        self.manager: _Manager | None = None
        #: Services still not serving when the deadline passed.
        self.unhealthy: list[str] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="health-watcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _run(self) -> None:
        asyncio.run(self._watch())

    async def _watch(self) -> None:
        assert self.manager is not None
        pending = {m.name: self.layout.grpc_address(m) for m in self.manifests}
        deadline = time.monotonic() + self.timeout_s
        while pending and not self._stopping.is_set():
            probe_s = max(0.05, min(1.0, deadline - time.monotonic()))
            results = await asyncio.gather(
                *(grpc_health(a, timeout_s=probe_s) for a in pending.values())
            )
            # An answer that arrives after the deadline is not "healthy in time".
            in_time = time.monotonic() <= deadline
            for name, (serving, _) in zip(list(pending), results, strict=True):
                if serving and in_time:
                    pending.pop(name)
            if not pending or self._stopping.is_set():
                break
            if time.monotonic() > deadline:
                self.unhealthy = sorted(pending)
                self.manager.say(
                    f"not healthy after {self.timeout_s:g} s: "
                    f"{', '.join(self.unhealthy)}; stopping everything"
                )
                self.manager.terminate()
                return
            await asyncio.sleep(0.5)
        if not pending and not self._stopping.is_set():
            rows = await check_all(self._targets(), timeout_s=2.0)
            self.manager.say("platform is up\n" + format_table(rows))

    def _targets(self) -> Targets:
        layout = self.layout
        return Targets(
            postgres_dsn=layout.app_dsn,
            nats_url=layout.nats_url,
            nats_monitor_url=layout.nats_monitor_url,
            services=service_targets(layout, self.manifests),
        )


def _check_ports(layout: Layout, manifests: Sequence[ServiceManifest]) -> None:
    """Fail before starting anything when a port is out of range or already taken."""
    ports = {"nats": layout.nats_port, "nats monitoring": layout.nats_monitor_port}
    for index, manifest in enumerate(MANIFESTS):
        if manifest not in manifests:
            continue
        ports[f"{manifest.name} grpc"] = layout.grpc_port(manifest)
        ports[f"{manifest.name} metrics"] = layout.metrics_port(index)
        for purpose, port in layout.extra_ports(manifest).items():
            ports[f"{manifest.name} {purpose}"] = port
    # PostgreSQL's port may legitimately be taken by our own running cluster.
    all_ports = {**ports, "postgresql": layout.postgres_port}
    bad = [f"{what} {port}" for what, port in all_ports.items() if not 0 < port < 65536]
    if bad:
        raise PlatformError(
            f"port offset {layout.port_offset} puts ports out of range: " + ", ".join(bad)
        )
    taken = [f"{what} {port}" for what, port in ports.items() if not _port_free(port)]
    if taken:
        raise PlatformError(
            "ports already in use: "
            + ", ".join(taken)
            + "; stop what uses them or pass --port-offset"
        )


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
    return True


def _raise_system_exit(signum: int, frame: FrameType | None) -> NoReturn:
    # Until honcho installs its own handlers, SIGTERM must unwind through our finally.
    raise SystemExit(128 + signum)


def _already_stopping(signum: int, frame: FrameType | None) -> None:
    _LOGGER.warning(
        "%s received while stopping; still stopping NATS and PostgreSQL",
        signal.Signals(signum).name,
    )
