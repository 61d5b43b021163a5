"""Fixtures for the control-plane tests: a real control-plane process on the real NATS server.

The process is started the way production starts it, ``python -m
brokermesh.services.control_plane`` configured only through the environment,
and counts as up once its gRPC health check reports SERVING. Tests may kill
it (SIGKILL) and start it again; the fixture always stops it in the end.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import nats
import pytest
import pytest_asyncio
from nats.aio.client import Client as NatsClient
from nats.js.kv import KeyValue

from brokermesh.control.v1 import control_pb2, control_pb2_grpc
from brokermesh.mesh import controls as mesh_controls

from .support import ControlPlaneProcess, operator


@pytest.fixture(scope="package")
def control_plane(
    nats_server: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ControlPlaneProcess]:
    """A running control-plane process on the session's NATS server."""
    process = ControlPlaneProcess(nats_server.url, tmp_path_factory.mktemp("control-plane"))
    try:
        process.start()
        yield process
    finally:
        process.stop()


@pytest.fixture(autouse=True)
def _normal_trading_afterwards(request: pytest.FixtureRequest) -> Iterator[None]:
    """Leave trading resumed and NORMAL after each test, for whatever runs next on this server."""
    yield
    if "control_plane" not in request.fixturenames:
        return
    process: ControlPlaneProcess = request.getfixturevalue("control_plane")
    if not process.running:
        process.start()
    with grpc.insecure_channel(process.address) as channel:
        stub = control_pb2_grpc.ControlPlaneServiceStub(channel)
        reason = "control-plane tests: back to normal"
        stub.SetKillSwitch(
            control_pb2.SetKillSwitchRequest(trading_halted=False, reason=reason, actor=operator()),
            timeout=5,
        )
        stub.SetDegradationMode(
            control_pb2.SetDegradationModeRequest(
                mode=control_pb2.DEGRADATION_MODE_NORMAL, reason=reason, actor=operator()
            ),
            timeout=5,
        )


@pytest_asyncio.fixture
async def stub(
    control_plane: ControlPlaneProcess,
) -> AsyncIterator[control_pb2_grpc.ControlPlaneServiceStub]:
    """An async stub on a fresh channel to the control plane."""
    async with grpc.aio.insecure_channel(control_plane.address) as channel:
        yield control_pb2_grpc.ControlPlaneServiceStub(channel)


@pytest_asyncio.fixture
async def nats_client(nats_server: Any) -> AsyncIterator[NatsClient]:
    """A plain NATS connection for looking at (and tampering with) what the service stored."""
    nc = await nats.connect(nats_server.url)
    try:
        yield nc
    finally:
        await nc.close()


@pytest_asyncio.fixture
async def controls_kv(nats_client: NatsClient) -> KeyValue:
    """The ``controls`` bucket, read directly."""
    return await nats_client.jetstream().key_value(mesh_controls.BUCKET)
