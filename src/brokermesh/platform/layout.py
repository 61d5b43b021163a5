"""Where the local platform puts its files and which ports it listens on, for a port offset."""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from brokermesh.mesh.manifest import ServiceManifest

#: Every local listener binds to loopback only.
HOST = "127.0.0.1"
#: Base ports before the offset; PostgreSQL avoids 5432 so a system server can coexist.
POSTGRES_PORT = 54329
NATS_PORT = 4222
NATS_MONITOR_PORT = 8222
#: Service ``i`` of the registry exposes Prometheus metrics on ``METRICS_BASE_PORT + i``.
METRICS_BASE_PORT = 9400
#: Database, superuser (owner of the schema) and the role services connect as.
DATABASE = "brokermesh"
OWNER_ROLE = "brokermesh"
APP_ROLE = "brokermesh_app"
#: Where ``up`` records the offset it used, so ``status`` can find the same ports.
STATE_FILE = "platform.json"


def default_data_dir() -> Path:
    """``.brokermesh`` under the current directory, as an absolute path."""
    return (Path.cwd() / ".brokermesh").resolve()


@dataclass(frozen=True, slots=True)
class Layout:
    """Paths and addresses of one local platform: a data directory and a port offset."""

    data_dir: Path
    port_offset: int = 0

    @property
    def postgres_dir(self) -> Path:
        return self.data_dir / "postgres"

    @property
    def nats_dir(self) -> Path:
        return self.data_dir / "nats"

    @property
    def state_file(self) -> Path:
        return self.data_dir / STATE_FILE

    @property
    def postgres_port(self) -> int:
        return POSTGRES_PORT + self.port_offset

    @property
    def nats_port(self) -> int:
        return NATS_PORT + self.port_offset

    @property
    def nats_monitor_port(self) -> int:
        return NATS_MONITOR_PORT + self.port_offset

    @property
    def nats_url(self) -> str:
        return nats_url_at(self.nats_port)

    @property
    def nats_monitor_url(self) -> str:
        return f"http://{HOST}:{self.nats_monitor_port}"

    @property
    def owner_dsn(self) -> str:
        return postgres_dsn(OWNER_ROLE, self.postgres_port)

    @property
    def app_dsn(self) -> str:
        return postgres_dsn(APP_ROLE, self.postgres_port)

    def grpc_port(self, manifest: ServiceManifest) -> int:
        return manifest.grpc_port + self.port_offset

    def grpc_address(self, manifest: ServiceManifest) -> str:
        return f"{HOST}:{self.grpc_port(manifest)}"

    def extra_ports(self, manifest: ServiceManifest) -> dict[str, int]:
        """The manifest's extra ports by purpose, shifted by the offset."""
        return {purpose: port + self.port_offset for purpose, port in manifest.extra_ports}

    def metrics_port(self, index: int) -> int:
        return METRICS_BASE_PORT + index + self.port_offset

    def service_data_dir(self, manifest: ServiceManifest) -> Path:
        return self.data_dir / manifest.name


def postgres_dsn(role: str, port: int, *, host: str = HOST, database: str = DATABASE) -> str:
    """A password-less DSN: the local cluster trusts loopback connections."""
    return f"postgresql://{role}@{host}:{port}/{database}"


def nats_url_at(port: int) -> str:
    """The client URL of a NATS server on loopback ``port``."""
    return f"nats://{HOST}:{port}"


def write_state(layout: Layout, services: list[str]) -> None:
    """Record what ``up`` runs, so ``status`` can check the same ports and services."""
    layout.data_dir.mkdir(parents=True, exist_ok=True)
    layout.state_file.write_text(
        json.dumps(
            {"pid": os.getpid(), "port_offset": layout.port_offset, "services": services}, indent=2
        )
    )


def read_state(data_dir: Path) -> dict[str, Any] | None:
    """The state ``up`` recorded in ``data_dir``, or None when it is not running there."""
    try:
        state = json.loads((data_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def clear_state(layout: Layout) -> None:
    layout.state_file.unlink(missing_ok=True)


def add_layout_arguments(
    parser: argparse.ArgumentParser, *, remembered_offset: bool = True
) -> None:
    """``--data-dir`` and ``--port-offset``, shared by every command that finds the platform.

    With ``remembered_offset`` the help says that an unset offset is the one a running
    ``up`` recorded (see :func:`layout_from_args`); ``up`` itself starts at 0.
    """
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="platform data directory (default ./.brokermesh)",
    )
    fallback = (
        "the offset the running `brokermesh up` uses in --data-dir, else 0"
        if remembered_offset
        else "0"
    )
    parser.add_argument(
        "--port-offset",
        type=int,
        default=None,
        metavar="N",
        help=f"add N to every port, PostgreSQL and NATS included (default: {fallback})",
    )


def layout_from_args(args: argparse.Namespace) -> Layout:
    """The layout named by ``--data-dir``/``--port-offset``; an unset offset is taken from
    the state a running ``up`` recorded in the data directory, else 0."""
    data_dir = (args.data_dir or default_data_dir()).resolve()
    offset = args.port_offset
    if offset is None:
        state = read_state(data_dir) or {}
        offset = int(state.get("port_offset", 0))
    return Layout(data_dir, offset)
