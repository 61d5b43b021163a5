"""Health of every local platform component: PostgreSQL, NATS, each service and the REST gateway.

Each check is a real request with a short timeout: PostgreSQL answers
``select 1``, NATS's monitoring endpoint reports JetStream healthy, every
service answers the standard gRPC health check with SERVING, and the gateway
answers ``GET /healthz`` with 200. All checks run concurrently.
"""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import asyncpg
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from brokermesh.mesh.manifest import ServiceManifest
from brokermesh.platform.layout import HOST, Layout
from brokermesh.platform.nats import HEALTH_PATH

UP = "up"
DOWN = "down"
POSTGRES = "postgresql"
NATS = "nats"
#: The gateway's HTTP listener is reported as a component of its own.
HTTP_SUFFIX = "-http"


@dataclass(frozen=True, slots=True)
class ComponentStatus:
    """One row of ``brokermesh status``."""

    component: str
    address: str
    status: str
    detail: str

    @property
    def up(self) -> bool:
        return self.status == UP

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class ServiceTarget:
    """A service to check: its gRPC address and the extra listeners worth showing."""

    name: str
    grpc_address: str
    #: Extra listeners by purpose, e.g. {"fix": "127.0.0.1:9881"}.
    extras: tuple[tuple[str, str], ...] = ()
    #: Base URL of an HTTP listener checked with GET /healthz, if the service has one.
    http_url: str = ""


@dataclass(frozen=True, slots=True)
class Targets:
    """Everything one status run checks; None or empty leaves a component out."""

    postgres_dsn: str | None = None
    nats_url: str = ""
    nats_monitor_url: str | None = None
    services: tuple[ServiceTarget, ...] = ()


def service_targets(
    layout: Layout, manifests: Sequence[ServiceManifest]
) -> tuple[ServiceTarget, ...]:
    """Targets for ``manifests`` at the layout's (offset) ports."""
    targets = []
    for manifest in manifests:
        extras = layout.extra_ports(manifest)
        http = extras.pop("http", None)
        targets.append(
            ServiceTarget(
                name=manifest.name,
                grpc_address=layout.grpc_address(manifest),
                extras=tuple((purpose, f"{HOST}:{port}") for purpose, port in extras.items()),
                http_url=f"http://{HOST}:{http}" if http is not None else "",
            )
        )
    return tuple(targets)


async def check_all(targets: Targets, *, timeout_s: float = 2.0) -> list[ComponentStatus]:
    """Run every check concurrently; rows come back in a stable order."""
    checks = []
    if targets.postgres_dsn is not None:
        checks.append(check_postgres(targets.postgres_dsn, timeout_s=timeout_s))
    if targets.nats_monitor_url is not None:
        checks.append(
            check_nats(targets.nats_monitor_url, nats_url=targets.nats_url, timeout_s=timeout_s)
        )
    for service in targets.services:
        checks.append(check_service(service, timeout_s=timeout_s))
        if service.http_url:
            checks.append(
                check_http(f"{service.name}{HTTP_SUFFIX}", service.http_url, timeout_s=timeout_s)
            )
    return list(await asyncio.gather(*checks))


async def check_postgres(dsn: str, *, timeout_s: float = 2.0) -> ComponentStatus:
    """Connect to ``dsn`` and run ``select 1``."""
    address = _without_password(dsn)
    try:
        conn = await asyncpg.connect(dsn, timeout=timeout_s)
        try:
            await conn.fetchval("SELECT 1", timeout=timeout_s)
        finally:
            await conn.close(timeout=timeout_s)
    # TimeoutError is an OSError.
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        return ComponentStatus(POSTGRES, address, DOWN, _describe(exc))
    return ComponentStatus(POSTGRES, address, UP, "select 1 ok")


async def check_nats(
    monitor_url: str, *, nats_url: str = "", timeout_s: float = 2.0
) -> ComponentStatus:
    """Ask the monitoring endpoint whether the server and JetStream are healthy."""
    address = f"{nats_url} (monitor {monitor_url})" if nats_url else monitor_url
    ok, detail = await asyncio.to_thread(_http_get, f"{monitor_url}{HEALTH_PATH}", timeout_s)
    return ComponentStatus(NATS, address, UP if ok else DOWN, detail)


async def check_service(service: ServiceTarget, *, timeout_s: float = 2.0) -> ComponentStatus:
    """The standard gRPC health check for the whole server (service name "")."""
    address = service.grpc_address
    if service.extras:
        address += " (" + ", ".join(f"{p} {a}" for p, a in service.extras) + ")"
    serving, detail = await grpc_health(service.grpc_address, timeout_s=timeout_s)
    return ComponentStatus(service.name, address, UP if serving else DOWN, detail)


async def grpc_health(address: str, *, timeout_s: float = 2.0) -> tuple[bool, str]:
    """Whether ``address`` reports SERVING, and the status or error code it gave."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout_s)
        except grpc.aio.AioRpcError as exc:
            return False, exc.code().name
    name = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    return reply.status == health_pb2.HealthCheckResponse.SERVING, name


async def check_http(component: str, base_url: str, *, timeout_s: float = 2.0) -> ComponentStatus:
    """GET ``<base_url>/healthz``; 200 is up."""
    ok, detail = await asyncio.to_thread(_http_get, f"{base_url}/healthz", timeout_s)
    return ComponentStatus(component, base_url, UP if ok else DOWN, detail)


def format_table(rows: Sequence[ComponentStatus]) -> str:
    """Rows as an aligned text table: component, address, status, detail."""
    header = ("COMPONENT", "ADDRESS", "STATUS", "DETAIL")
    cells = [header, *((r.component, r.address, r.status, r.detail) for r in rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(header) - 1)]
    return "\n".join(
        "  ".join(value.ljust(width) for value, width in zip(line[:-1], widths, strict=True))
        + "  "
        + line[-1]
        for line in cells
    )


def _http_get(url: str, timeout_s: float) -> tuple[bool, str]:
    # Blocking on purpose: run in a worker thread, urllib needs no extra dependency.
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as reply:
            return reply.status == 200, f"HTTP {reply.status}"
    except urllib.error.HTTPError as exc:
        return False, f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return False, _describe(exc)


def _without_password(dsn: str) -> str:
    parts = urllib.parse.urlsplit(dsn)
    if parts.password is None:
        return dsn
    netloc = parts.netloc.replace(f":{parts.password}@", "@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def _describe(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    text = str(reason if reason is not None else exc) or type(exc).__name__
    return text.splitlines()[0]
