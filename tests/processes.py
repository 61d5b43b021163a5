"""Real service processes for the tests, started the way production starts them.

``python -m <module>`` configured only through the environment; a process counts as up
once its gRPC health check reports SERVING. Tests can stop it gracefully, kill it as in a
crash, or freeze it with its sockets open; :meth:`ServiceProcess.stop` is always safe.
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
    """A port nothing listens on right now (the kernel's pick for an ephemeral bind)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ServiceProcess:
    """One service process on ``port`` (a free one by default), logging into ``data_dir``.

    ``BROKERMESH_PORT`` and ``BROKERMESH_DATA_DIR`` are set from the arguments; ``env``
    adds the settings under test, and no other ``BROKERMESH_*`` variable leaks in.
    """

    def __init__(
        self,
        module: str,
        data_dir: Path,
        env: Mapping[str, str],
        *,
        port: int | None = None,
        log_name: str = "service.log",
    ) -> None:
        self.port = free_port() if port is None else port
        self.address = f"127.0.0.1:{self.port}"
        self.data_dir = data_dir
        self._module = module
        self._env = dict(env)
        self._log_path = data_dir / log_name
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the process and wait until its health check reports SERVING."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("BROKERMESH_")}
        env.update(BROKERMESH_PORT=str(self.port), BROKERMESH_DATA_DIR=str(self.data_dir))
        env.update(self._env)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self._log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", self._module], env=env, stdout=log, stderr=subprocess.STDOUT
            )
        self._wait_serving()

    def stop(self) -> None:
        """SIGTERM and a graceful shutdown; SIGKILL if it lingers. Safe if never started."""
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL: no shutdown handler runs, as in a crash."""
        self._end(signal.SIGKILL)

    def pause(self) -> None:
        """SIGSTOP: the process hangs, its sockets open, answering nothing."""
        if self.running:
            assert self._process is not None
            self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)

    def log_tail(self, lines: int = 60) -> str:
        """The end of the process's log, for failure messages."""
        try:
            return "\n".join(self._log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _end(self, how: signal.Signals) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(how)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def _wait_serving(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        with grpc.insecure_channel(self.address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                if not self.running:
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
