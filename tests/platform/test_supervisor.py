"""The supervisor: per-service environment, that `up` leaves no process behind, and that it
restarts the control plane while the data plane keeps running."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from brokermesh.mesh.config import ServiceSettings, load, parse_upstreams
from brokermesh.mesh.manifest import ServiceManifest
from brokermesh.platform import PlatformError
from brokermesh.platform.layout import Layout
from brokermesh.platform.nats import LocalNats
from brokermesh.platform.postgres import LocalPostgres
from brokermesh.platform.status import grpc_health
from brokermesh.platform.supervisor import (
    process_env,
    restarts_on_exit,
    select_manifests,
    service_command,
    service_env,
)
from brokermesh.services.registry import MANIFESTS, by_name
from tests.processes import free_port

from .support import port_free, process_tree, processes_using, wait_gone

OFFSET = 100
LAYOUT = Layout(Path("/srv/bm"), OFFSET)


@pytest.fixture
def platform_dir() -> Iterator[Path]:
    """A directory the ``postgres`` user can reach (pytest's tmp tree is root-only)."""
    path = Path(tempfile.mkdtemp(prefix="brokermesh-up-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda m: m.name)
def test_every_service_gets_its_shifted_ports_and_platform_addresses(
    manifest: ServiceManifest,
) -> None:
    env = service_env(manifest, LAYOUT)

    index = MANIFESTS.index(manifest)
    assert env["BROKERMESH_SERVICE"] == manifest.name
    assert env["BROKERMESH_PORT"] == str(manifest.grpc_port + OFFSET)
    assert env["BROKERMESH_METRICS_PORT"] == str(9400 + index + OFFSET)
    assert env["BROKERMESH_DATA_DIR"] == f"/srv/bm/{manifest.name}"
    assert env["BROKERMESH_NATS_URL"] == "nats://127.0.0.1:4322"
    assert env["BROKERMESH_DATABASE_URL"] == (
        "postgresql://brokermesh_app@127.0.0.1:54429/brokermesh"
    )
    assert parse_upstreams(env["BROKERMESH_UPSTREAMS"]) == {
        m.name: f"127.0.0.1:{m.grpc_port + OFFSET}" for m in MANIFESTS
    }


def test_extra_ports_are_named_by_service_and_purpose() -> None:
    assert service_env(by_name("gateway"), LAYOUT)["BROKERMESH_GATEWAY_HTTP_PORT"] == "8180"
    assert service_env(by_name("venue-xnas"), LAYOUT)["BROKERMESH_VENUE_XNAS_FIX_PORT"] == "9981"
    assert service_env(by_name("venue-arca"), LAYOUT)["BROKERMESH_VENUE_ARCA_FIX_PORT"] == "9982"
    assert service_env(by_name("venue-gateway"), LAYOUT)["BROKERMESH_VENUE_FIX_PORTS"] == (
        "venue-xnas=127.0.0.1:9981,venue-arca=127.0.0.1:9982"
    )
    # A variable under another service's prefix would be refused there as unknown.
    assert "BROKERMESH_GATEWAY_HTTP_PORT" not in service_env(by_name("oms"), LAYOUT)
    assert "BROKERMESH_VENUE_FIX_PORTS" not in service_env(by_name("venue-xnas"), LAYOUT)


def test_metrics_ports_are_distinct_and_stable_under_a_subset() -> None:
    ports = [service_env(m, LAYOUT)["BROKERMESH_METRICS_PORT"] for m in MANIFESTS]

    assert len(set(ports)) == len(MANIFESTS)
    assert service_env(by_name("gateway"), LAYOUT)["BROKERMESH_METRICS_PORT"] == ports[-1]


@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda m: m.name)
def test_environment_loads_through_the_config_layering(manifest: ServiceManifest) -> None:
    # Settings as a service declares them: the shared fields plus one per extra port.
    extra = [(f"{purpose}_port", int, 0) for purpose, _ in manifest.extra_ports]
    if manifest.fix_peers:
        extra.append(("venue_fix_ports", str, ""))
    settings_cls = dataclasses.make_dataclass(
        "Settings", extra, bases=(ServiceSettings,), frozen=True, kw_only=True
    )

    settings = load(settings_cls, manifest.name, environ=process_env(manifest, LAYOUT, {}))

    assert settings.port == manifest.grpc_port + OFFSET
    assert settings.data_dir == Path(f"/srv/bm/{manifest.name}")
    assert settings.shutdown_grace_s == 3.0
    for purpose, port in manifest.extra_ports:
        assert getattr(settings, f"{purpose}_port") == port + OFFSET


def test_callers_own_grace_period_wins() -> None:
    env = process_env(by_name("oms"), LAYOUT, {"BROKERMESH_SHUTDOWN_GRACE_S": "1.5"})

    assert env["BROKERMESH_SHUTDOWN_GRACE_S"] == "1.5"
    assert env["PYTHONUNBUFFERED"] == "1"


def test_only_selects_in_start_order_and_refuses_unknown_names() -> None:
    assert [m.name for m in select_manifests(["gateway", "control-plane"])] == [
        "control-plane",
        "gateway",
    ]
    assert select_manifests([]) == MANIFESTS
    with pytest.raises(PlatformError, match="nonesuch"):
        select_manifests(["oms", "nonesuch"])


def test_command_runs_the_entry_module_with_this_interpreter() -> None:
    command = service_command(by_name("venue-xnas"))

    assert command == f"exec {sys.executable} -m brokermesh.services.venue_sim"


def test_command_appends_the_output_to_the_service_log_in_a_log_dir(tmp_path: Path) -> None:
    command = service_command(by_name("venue-xnas"), tmp_path / "logs dir")

    assert command == (
        f"exec {sys.executable} -m brokermesh.services.venue_sim "
        f">>'{tmp_path}/logs dir/venue-xnas.log' 2>&1"
    )


def test_only_the_control_plane_is_restarted_when_it_exits() -> None:
    restarted = [m.name for m in MANIFESTS if restarts_on_exit(m)]

    assert restarted == ["control-plane"]


def test_postgres_and_nats_stop_without_leaving_a_process(platform_dir: Path) -> None:
    pg = LocalPostgres(platform_dir / "postgres", port=free_port())
    nats = LocalNats(platform_dir / "nats", port=free_port(), monitor_port=free_port())
    pids: set[int] = set()
    try:
        assert pg.start() is True
        assert pg.start() is False  # already running: reused
        nats.start()
        postmaster = pg.postmaster_pid()
        assert postmaster is not None and nats.pid is not None
        pids = process_tree(postmaster) | {nats.pid}
        assert len(pids) > 2  # the postmaster's background workers are in the tree
    finally:
        nats.stop()
        pg.stop()

    assert wait_gone(pids) == []
    assert processes_using(str(platform_dir)) == []
    assert not pg.is_running()


def test_up_stops_services_nats_and_postgres_on_sigterm(platform_dir: Path) -> None:
    offset = _free_offset(["control-plane"])
    with _running_up(platform_dir, offset, "control-plane", 60) as (up, log):
        pids = _watch_until_services_spawned(up, platform_dir)
        up.send_signal(signal.SIGTERM)
        returncode = up.wait(timeout=60)

    output = log.read_text()
    assert returncode != 0, output
    assert wait_gone(pids) == [], output
    assert processes_using(str(platform_dir)) == [], output
    assert not (platform_dir / "platform.json").exists()
    assert not (platform_dir / "postgres" / "postmaster.pid").exists()


def test_up_with_a_log_dir_writes_each_service_log_there_instead_of_relaying_it(
    platform_dir: Path,
) -> None:
    offset = _free_offset(["control-plane"])
    logs = platform_dir / "service-logs"
    with _running_up(platform_dir, offset, "control-plane", 60, "--log-dir", str(logs)) as (
        up,
        log,
    ):
        _wait_for_text(up, log, "platform is up")
        up.send_signal(signal.SIGTERM)
        up.wait(timeout=60)

    relayed = log.read_text()
    written = (logs / "control-plane.log").read_text()
    assert "control-plane serving on" in written
    assert "control-plane serving on" not in relayed
    assert f"service logs go to {logs}/<service>.log" in relayed


def test_up_gives_up_on_a_service_that_is_not_healthy_in_time(platform_dir: Path) -> None:
    offset = _free_offset(["control-plane"])
    # No Python service is SERVING 10 ms after its start.
    with _running_up(platform_dir, offset, "control-plane", 0.01) as (up, log):
        returncode = up.wait(timeout=120)

    output = log.read_text()
    assert returncode == 1, output
    assert processes_using(str(platform_dir)) == [], output
    assert not (platform_dir / "postgres" / "postmaster.pid").exists()


@pytest.mark.timeout(240)
def test_up_restarts_the_control_plane_while_the_data_plane_keeps_running(
    platform_dir: Path,
) -> None:
    # Arrange: the control plane and one data-plane service, up and SERVING.
    offset = _free_offset(["control-plane", "venue-xnas"])
    layout = Layout(platform_dir, offset)
    control_address = layout.grpc_address(by_name("control-plane"))
    venue_address = layout.grpc_address(by_name("venue-xnas"))
    with _running_up(
        platform_dir, offset, "control-plane,venue-xnas", 90, "--restart-delay", "0.5"
    ) as (up, log):
        _wait_for_text(up, log, "platform is up")
        control = _service_process(up, "brokermesh.services.control_plane")
        venue = _service_process(up, "brokermesh.services.venue_sim")

        # Act: the control plane dies.
        control.kill()
        control.wait(timeout=10)

        # Assert: reported, restarted, and the data plane never noticed.
        _wait_for_text(up, log, "control-plane exited; the other processes keep running")
        restarted = _wait_for_new_service_process(up, "brokermesh.services.control_plane", control)
        assert _serving_within(control_address, 60), log.read_text()
        assert venue.is_running()
        assert _service_process(up, "brokermesh.services.venue_sim").pid == venue.pid
        assert _serving_within(venue_address, 5), log.read_text()
        assert up.poll() is None, log.read_text()

        # A data-plane process that exits still stops everything.
        venue.kill()
        returncode = up.wait(timeout=60)

    output = log.read_text()
    assert returncode != 0, output
    assert "venue-xnas exited; stopping everything" in output
    assert wait_gone([restarted.pid, venue.pid]) == [], output
    assert processes_using(str(platform_dir)) == [], output


def _wait_for_text(
    up: subprocess.Popen[bytes], log: Path, text: str, timeout_s: float = 120
) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in log.read_text(errors="replace"):
        assert up.poll() is None, f"up exited before {text!r}:\n{log.read_text()}"
        assert time.monotonic() < deadline, f"no {text!r}:\n{log.read_text()}"
        time.sleep(0.2)


def _service_processes(up: subprocess.Popen[bytes], module: str) -> list[psutil.Process]:
    found = []
    for child in psutil.Process(up.pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if module in child.cmdline() and child.status() != psutil.STATUS_ZOMBIE:
                found.append(child)
    return found


def _service_process(up: subprocess.Popen[bytes], module: str) -> psutil.Process:
    (process,) = _service_processes(up, module)
    return process


def _wait_for_new_service_process(
    up: subprocess.Popen[bytes], module: str, old: psutil.Process
) -> psutil.Process:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        fresh = [p for p in _service_processes(up, module) if p.pid != old.pid]
        if fresh:
            return fresh[0]
        time.sleep(0.1)
    raise AssertionError(f"{module} was not started again")


def _serving_within(address: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        serving, _ = asyncio.run(grpc_health(address, timeout_s=1.0))
        if serving:
            return True
        time.sleep(0.2)
    return False


@contextlib.contextmanager
def _running_up(
    data_dir: Path, offset: int, only: str, health_timeout: float, *extra: str
) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """``brokermesh up`` as a subprocess; stopped with SIGTERM (SIGKILL only as a last
    resort, which would orphan its children) whatever the test did."""
    log = data_dir / "up.log"
    command = [
        str(Path(sys.executable).parent / "brokermesh"),
        "up",
        "--data-dir",
        str(data_dir),
        "--port-offset",
        str(offset),
        "--only",
        only,
        "--health-timeout",
        str(health_timeout),
        *extra,
    ]
    with log.open("w") as out:
        up = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield up, log
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGTERM)
            try:
                up.wait(timeout=60)
            except subprocess.TimeoutExpired:
                up.kill()
                up.wait()


def _watch_until_services_spawned(up: subprocess.Popen[bytes], data_dir: Path) -> set[int]:
    """Every pid of the running platform: ``up``'s tree (NATS and the services) and the
    postmaster's, collected once the control plane was started."""
    pids: set[int] = set()
    pid_file = data_dir / "postgres" / "postmaster.pid"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and up.poll() is None:
        pids |= process_tree(up.pid)
        postmaster = _postmaster(pid_file)
        if postmaster:
            pids |= process_tree(postmaster)
        if (data_dir / "platform.json").exists() and _service_processes(
            up, "brokermesh.services.control_plane"
        ):
            break
        time.sleep(0.2)
    time.sleep(0.5)
    return pids | process_tree(up.pid)


def _postmaster(pid_file: Path) -> int | None:
    """The postmaster's pid; initdb's standalone backend writes a negative one, skipped."""
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if pid > 0 else None


def _free_offset(services: list[str]) -> int:
    """An offset at which every port the platform would use is free."""
    for _ in range(200):
        offset = random.randrange(1000, 11000)
        layout = Layout(Path("/unused"), offset)
        ports = [layout.postgres_port, layout.nats_port, layout.nats_monitor_port]
        for name in services:
            manifest = by_name(name)
            ports += [
                layout.grpc_port(manifest),
                layout.metrics_port(MANIFESTS.index(manifest)),
                *layout.extra_ports(manifest).values(),
            ]
        if all(port_free(port) for port in ports):
            return offset
    raise AssertionError("no free port offset found")
