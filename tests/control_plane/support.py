"""A real control-plane process for tests, and small helpers shared by the test modules.

The process is started the way production starts it, ``python -m
brokermesh.services.control_plane`` configured only through the environment,
and counts as up once its gRPC health check reports SERVING.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy

from brokermesh.common.v1 import common_pb2
from brokermesh.control.v1 import control_pb2
from brokermesh.mesh import controls as mesh_controls

#: Seconds a freshly started process gets to report SERVING.
START_TIMEOUT_S = 30.0


def free_port() -> int:
    """A port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def operator(ops_id: str = "ops-test") -> common_pb2.Actor:
    return common_pb2.Actor(type=common_pb2.ACTOR_TYPE_OPERATOR, id=ops_id)


class ControlPlaneProcess:
    """One control-plane process at a fixed address; can be killed and started again."""

    def __init__(self, nats_url: str, data_dir: Path, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self._nats_url = nats_url
        self._data_dir = data_dir
        self._env = dict(env or {})
        self._log_path = data_dir / "control-plane.log"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the process and wait until its health check reports SERVING."""
        # Only the settings under test: stray BROKERMESH_* variables must not leak in.
        env = {k: v for k, v in os.environ.items() if not k.startswith("BROKERMESH_")}
        env.update(
            BROKERMESH_PORT=str(self.port),
            BROKERMESH_NATS_URL=self._nats_url,
            BROKERMESH_DATA_DIR=str(self._data_dir),
        )
        env.update(self._env)
        with self._log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "brokermesh.services.control_plane"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._wait_serving()

    def _wait_serving(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        with grpc.insecure_channel(self.address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                assert self._process is not None
                if self._process.poll() is not None:
                    raise RuntimeError(f"control plane exited early:\n{self.log_tail()}")
                try:
                    reply = health.Check(health_pb2.HealthCheckRequest(), timeout=0.5)
                except grpc.RpcError:
                    time.sleep(0.1)
                    continue
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
                time.sleep(0.1)
        raise TimeoutError(f"control plane not SERVING in {START_TIMEOUT_S}s:\n{self.log_tail()}")

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown handler runs, as in a crash."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM and a graceful shutdown; SIGKILL if that takes too long."""
        if self._process is None or self._process.poll() is not None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self._log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


async def audit_records(
    js: JetStreamContext, change_id: str
) -> list[tuple[control_pb2.ControlChange, str, float]]:
    """Every record of one change in stream order: (record, Nats-Msg-Id, stored-at seconds)."""
    subject = f"{mesh_controls.AUDIT_SUBJECT_PREFIX}{change_id}"
    sub = await js.subscribe(subject, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL)
    records = []
    try:
        while True:
            msg = await sub.next_msg(timeout=2.0)
            records.append(
                (
                    control_pb2.ControlChange.FromString(msg.data or b""),
                    (msg.headers or {}).get("Nats-Msg-Id", ""),
                    msg.metadata.timestamp.timestamp(),
                )
            )
            if msg.metadata.num_pending == 0:
                return records
    finally:
        await sub.unsubscribe()
