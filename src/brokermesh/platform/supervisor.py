"""``brokermesh up``: PostgreSQL, NATS, migrations and JetStream assets, then every service.

PostgreSQL (via pg_ctl) and NATS (a subprocess of ours) start first and stop
last; they are not supervised processes because the services depend on them
and must stop before them. The services run under
:class:`~brokermesh.platform.processes.Supervisor`, one process each, with
their output prefixed by name. A control-plane process that exits is
reported and restarted with backoff while the data plane keeps trading on
the last known controls; a data-plane process that exits stops everything.
A watcher thread polls every service's gRPC health until all report SERVING,
then prints the platform's addresses; when one is still not serving at the
deadline, everything stops and ``up`` exits non-zero. SIGINT or SIGTERM
stops the services (SIGTERM, then SIGKILL after a grace period), then NATS,
then PostgreSQL.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shlex
import signal
import socket
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import NoReturn

from honcho.printer import Printer

from brokermesh.mesh.manifest import Plane, ServiceManifest
from brokermesh.platform import PlatformError
from brokermesh.platform.layout import HOST, OWNER_ROLE, Layout, clear_state, write_state
from brokermesh.platform.migrate import apply_migrations
from brokermesh.platform.nats import LocalNats
from brokermesh.platform.postgres import LocalPostgres
from brokermesh.platform.processes import Supervisor
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
#: the supervisor sends SIGKILL ``processes.KILL_WAIT_S`` (5) seconds after SIGTERM, and a
#: service needs the rest of that for its own ``stop``.
SERVICE_SHUTDOWN_GRACE_S = "3"


@dataclass(frozen=True, slots=True)
class UpOptions:
    """What ``brokermesh up`` was asked to run."""

    data_dir: Path
    port_offset: int = 0
    #: Names of the services to start; empty starts all of them.
    only: tuple[str, ...] = ()
    health_timeout_s: float = 60.0
    #: Seconds before an exited control-plane process is started again; doubles with
    #: each quick exit, up to 30 s.
    restart_delay_s: float = 1.0
    #: Folder for one log file per service (``<name>.log``) instead of the prefixed relay
    #: to the terminal; None relays. Each service then writes its own lines, as under a
    #: container runtime, and the supervisor relays none of them.
    log_dir: Path | None = None


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


def service_command(manifest: ServiceManifest, log_dir: Path | None = None) -> str:
    """The shell command the supervisor runs; ``exec`` so signals reach Python, not a shell.

    With ``log_dir``, the service's output is appended to ``<log_dir>/<name>.log``.
    """
    command = "exec " + shlex.join([sys.executable, "-m", manifest.entry_module])
    if log_dir is None:
        return command
    return f"{command} >>{shlex.quote(str(log_dir / f'{manifest.name}.log'))} 2>&1"


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
        return _run_services(layout, manifests, options)
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


def restarts_on_exit(manifest: ServiceManifest) -> bool:
    """Whether ``up`` restarts ``manifest``'s process when it exits: the control plane's.

    The data plane does not depend on the control plane, so losing it is no
    reason to stop trading; a data-plane process that exits leaves the
    platform broken, and everything stops.
    """
    return manifest.plane == Plane.CONTROL


def _run_services(layout: Layout, manifests: Sequence[ServiceManifest], options: UpOptions) -> int:
    """Run ``manifests`` under the supervisor until they stop; the exit code ``up`` returns."""
    supervisor = Supervisor(Printer(sys.stdout), restart_delay_s=options.restart_delay_s)
    watcher = _HealthWatcher(layout, manifests, supervisor, timeout_s=options.health_timeout_s)
    if options.log_dir is not None:
        options.log_dir.mkdir(parents=True, exist_ok=True)
        supervisor.say(f"service logs go to {options.log_dir}/<service>.log")
    for manifest in manifests:
        supervisor.add(
            manifest.name,
            service_command(manifest, options.log_dir),
            env=process_env(manifest, layout),
            cwd=str(Path.cwd()),
            restart=restarts_on_exit(manifest),
        )
    try:
        supervisor.run(on_started=watcher.start)
    finally:
        watcher.stop()

    if watcher.unhealthy:
        return 1
    code = supervisor.returncode
    if code is None:
        return 0
    if code < 0:
        # A service killed by a signal: report it the way a shell would.
        return 128 - code
    # A service that exited by itself, even with 0, is a failed platform.
    return 1 if code == 0 and not supervisor.signalled else code


class _HealthWatcher:
    """Waits in a thread until every service reports SERVING, then prints the table."""

    def __init__(
        self,
        layout: Layout,
        manifests: Sequence[ServiceManifest],
        supervisor: Supervisor,
        *,
        timeout_s: float,
    ) -> None:
        self.layout = layout
        self.manifests = tuple(manifests)
        self.timeout_s = timeout_s
        self.supervisor = supervisor
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
                self.supervisor.say(
                    f"not healthy after {self.timeout_s:g} s: "
                    f"{', '.join(self.unhealthy)}; stopping everything"
                )
                self.supervisor.stop()
                return
            await asyncio.sleep(0.5)
        if not pending and not self._stopping.is_set():
            rows = await check_all(self._targets(), timeout_s=2.0)
            self.supervisor.say("platform is up\n" + format_table(rows))

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
    # Until the supervisor installs its own handlers, SIGTERM must unwind through our finally.
    raise SystemExit(128 + signum)


def _already_stopping(signum: int, frame: FrameType | None) -> None:
    _LOGGER.warning(
        "%s received while stopping; still stopping NATS and PostgreSQL",
        signal.Signals(signum).name,
    )
