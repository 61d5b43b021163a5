"""``brokermesh status`` against the real session servers, run as the console script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from brokermesh.platform.layout import Layout, write_state
from brokermesh.services.registry import by_name
from tests.processes import free_port


def _status(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).parent / "brokermesh"), "status", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def _infra_args(postgres: Any, nats_server: Any) -> list[str]:
    return [
        "--pg-dsn",
        postgres.app_dsn,
        "--nats-url",
        nats_server.url,
        "--nats-monitor-url",
        nats_server.monitor_url,
    ]


def test_json_reports_postgres_and_nats_up(postgres: Any, nats_server: Any, tmp_path: Path) -> None:
    result = _status(
        "--json",
        "--data-dir",
        str(tmp_path),
        "--only",
        "postgresql,nats",
        *_infra_args(postgres, nats_server),
    )

    assert result.returncode == 0, result.stdout + result.stderr
    rows = json.loads(result.stdout)
    assert [(r["component"], r["status"]) for r in rows] == [("postgresql", "up"), ("nats", "up")]
    assert all(set(r) == {"component", "address", "status", "detail"} for r in rows)
    assert f":{postgres.port}/" in rows[0]["address"]
    assert nats_server.url in rows[1]["address"]


def test_a_down_service_makes_the_exit_code_non_zero(
    postgres: Any, nats_server: Any, tmp_path: Path
) -> None:
    # An offset that puts the oms on a port nothing listens on.
    offset = free_port() - by_name("oms").grpc_port
    result = _status(
        "--json",
        "--data-dir",
        str(tmp_path),
        "--port-offset",
        str(offset),
        "--only",
        "postgresql,nats,oms",
        *_infra_args(postgres, nats_server),
    )

    assert result.returncode == 1
    rows = {r["component"]: r for r in json.loads(result.stdout)}
    assert rows["postgresql"]["status"] == rows["nats"]["status"] == "up"
    assert rows["oms"]["status"] == "down"
    assert rows["oms"]["detail"] == "UNAVAILABLE"
    assert rows["oms"]["address"] == f"127.0.0.1:{by_name('oms').grpc_port + offset}"


def test_offset_and_services_come_from_the_running_platform(
    postgres: Any, nats_server: Any, tmp_path: Path
) -> None:
    offset = free_port() - by_name("gateway").grpc_port
    write_state(Layout(tmp_path, offset), ["gateway"])

    result = _status("--data-dir", str(tmp_path), *_infra_args(postgres, nats_server))

    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["COMPONENT", "ADDRESS", "STATUS", "DETAIL"]
    components = [line.split()[0] for line in lines[1:]]
    assert components == ["postgresql", "nats", "gateway", "gateway-http"]
    assert f"http://127.0.0.1:{8080 + offset}" in result.stdout


def test_unknown_component_is_an_error(tmp_path: Path) -> None:
    result = _status("--data-dir", str(tmp_path), "--only", "nonesuch")

    assert result.returncode == 1
    assert "unknown component(s): nonesuch" in result.stderr
