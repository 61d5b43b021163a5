"""A real service process for the risk tests, started the way production starts it.

``python -m <module>`` configured only through the environment; it counts as up once its
gRPC health check reports SERVING. :meth:`ServiceProcess.stop` always ends it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

T = TypeVar("T")

#: Seconds a freshly started process gets to report SERVING.
START_TIMEOUT_S = 45.0


def free_port() -> int:
    """A port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServiceProcess:
    """One service process on a free port, with its log in ``data_dir``."""

    def __init__(self, module: str, data_dir: Path, env: Mapping[str, str]) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self._module = module
        self._data_dir = data_dir
        self._env = dict(env)
        self._log_path = data_dir / "service.log"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the process and wait until its health check reports SERVING."""
        # Only the settings under test: stray BROKERMESH_* variables must not leak in.
        env = {k: v for k, v in os.environ.items() if not k.startswith("BROKERMESH_")}
        env.update(
            BROKERMESH_PORT=str(self.port), BROKERMESH_DATA_DIR=str(self._data_dir), **self._env
        )
        with self._log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", self._module], env=env, stdout=log, stderr=subprocess.STDOUT
            )
        self._wait_serving()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it lingers; safe to call when it never started."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)

    def log_tail(self, lines: int = 40) -> str:
        """The end of the process's log, for failure messages."""
        try:
            return "\n".join(self._log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def _wait_serving(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        with grpc.insecure_channel(self.address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                assert self._process is not None
                if self._process.poll() is not None:
                    raise RuntimeError(f"{self._module} exited early:\n{self.log_tail()}")
                try:
                    reply = health.Check(health_pb2.HealthCheckRequest(), timeout=0.5)
                except grpc.RpcError:
                    time.sleep(0.1)
                    continue
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
                time.sleep(0.1)
        raise RuntimeError(
            f"{self._module} not SERVING after {START_TIMEOUT_S} s:\n{self.log_tail()}"
        )


async def eventually(
    probe: Callable[[], Awaitable[T]],
    accept: Callable[[T], bool],
    *,
    timeout_s: float = 10.0,
    interval_s: float = 0.1,
) -> T:
    """Call ``probe`` until ``accept`` likes its result; the last result after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = await probe()
        if accept(result) or time.monotonic() > deadline:
            return result
        await asyncio.sleep(interval_s)
