"""The control-plane service over gRPC: who may change controls, what is stored, what is audited."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from typing import Any, cast

import grpc
import pytest
from nats.aio.client import Client as NatsClient
from nats.js.kv import KeyValue

from brokermesh.common.v1 import common_pb2
from brokermesh.control.v1 import control_pb2, control_pb2_grpc
from brokermesh.mesh import controls as mesh_controls

from .support import ControlPlaneProcess, audit_records, operator

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(120)]

Stub = control_pb2_grpc.ControlPlaneServiceStub


async def _halt(stub: Stub, reason: str, ops_id: str = "ops-test") -> control_pb2.TradingControls:
    response = await stub.SetKillSwitch(
        control_pb2.SetKillSwitchRequest(trading_halted=True, reason=reason, actor=operator(ops_id))
    )
    return response.controls


async def test_kill_switch_is_stored_and_audited_with_the_actor(
    stub: Stub,
    controls_kv: KeyValue,
    nats_client: NatsClient,
) -> None:
    before = (await stub.GetTradingControls(control_pb2.GetTradingControlsRequest())).controls

    after = await _halt(stub, "venue outage drill", "ops-alice")

    assert after.trading_halted
    assert after.reason == "venue outage drill"
    assert after.updated_by == operator("ops-alice")
    assert after.updated_at.seconds > 0
    assert after.revision > before.revision
    # The bucket holds exactly what the service answered, at the revision it named.
    entry = await controls_kv.get(mesh_controls.KEY)
    assert entry.revision == after.revision
    assert mesh_controls.decode_controls(entry.value or b"", entry.revision) == after

    changes = (
        await stub.ListControlChanges(control_pb2.ListControlChangesRequest(limit=1))
    ).changes
    assert len(changes) == 1
    change = changes[0]
    assert change.actor == operator("ops-alice")
    assert change.reason == "venue outage drill"
    assert change.after == after
    assert change.outcome == control_pb2.CHANGE_OUTCOME_APPLIED
    assert after.change_id == change.change_id
    assert change.before.revision == before.revision
    assert change.before.trading_halted == before.trading_halted
    # Nothing authenticates callers locally: the operator's name is all there is.
    assert change.authenticated_caller == ""
    # The records sit on the change's own subject, de-duplicated by message id.
    records = await audit_records(nats_client.jetstream(), change.change_id)
    assert [(r.outcome, msg_id) for r, msg_id, _ in records] == [
        (control_pb2.CHANGE_OUTCOME_INTENDED, change.change_id),
        (control_pb2.CHANGE_OUTCOME_APPLIED, f"{change.change_id}.outcome"),
    ]
    assert records[-1][0] == change


async def test_history_lists_newest_first(stub: Stub) -> None:
    reasons = [f"history check {i}" for i in range(3)]
    for reason in reasons:
        await _halt(stub, reason)

    changes = (
        await stub.ListControlChanges(control_pb2.ListControlChangesRequest(limit=3))
    ).changes

    assert [c.reason for c in changes] == list(reversed(reasons))
    revisions = [c.after.revision for c in changes]
    assert revisions == sorted(revisions, reverse=True)


async def test_history_without_a_limit_uses_the_default(stub: Stub) -> None:
    await _halt(stub, "history default check")

    changes = (await stub.ListControlChanges(control_pb2.ListControlChangesRequest())).changes

    assert 1 <= len(changes) <= 50
    assert changes[0].reason == "history default check"


async def test_degradation_mode_keeps_the_kill_switch(stub: Stub) -> None:
    await _halt(stub, "halt before mode change")

    response = await stub.SetDegradationMode(
        control_pb2.SetDegradationModeRequest(
            mode=control_pb2.DEGRADATION_MODE_REDUCED, reason="AI scoring slow", actor=operator()
        )
    )

    assert response.controls.mode == control_pb2.DEGRADATION_MODE_REDUCED
    assert response.controls.trading_halted


@pytest.mark.parametrize(
    "actor",
    [
        common_pb2.Actor(type=common_pb2.ACTOR_TYPE_ADVISOR, id="adv-1"),
        common_pb2.Actor(type=common_pb2.ACTOR_TYPE_SYSTEM, id="risk"),
        common_pb2.Actor(type=common_pb2.ACTOR_TYPE_OPERATOR, id=""),
    ],
    ids=["advisor", "system", "operator-without-id"],
)
async def test_only_operators_may_change_controls(
    stub: Stub,
    controls_kv: KeyValue,
    actor: common_pb2.Actor,
) -> None:
    revision = (
        await stub.GetTradingControls(control_pb2.GetTradingControlsRequest())
    ).controls.revision

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.SetKillSwitch(
            control_pb2.SetKillSwitchRequest(
                trading_halted=True, reason="not mine to halt", actor=actor
            )
        )

    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as refused_mode:
        await stub.SetDegradationMode(
            control_pb2.SetDegradationModeRequest(
                mode=control_pb2.DEGRADATION_MODE_EMERGENCY, reason="not mine", actor=actor
            )
        )
    assert refused_mode.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # Nothing was written.
    current = (await stub.GetTradingControls(control_pb2.GetTradingControlsRequest())).controls
    assert current.revision == revision


@pytest.mark.parametrize(
    "request_message",
    [
        control_pb2.SetKillSwitchRequest(trading_halted=True, reason="", actor=operator()),
        control_pb2.SetKillSwitchRequest(trading_halted=True, reason="x" * 501, actor=operator()),
        control_pb2.SetKillSwitchRequest(trading_halted=True, reason="no actor"),
        control_pb2.SetDegradationModeRequest(reason="no mode", actor=operator()),
        control_pb2.SetDegradationModeRequest(
            mode=cast(control_pb2.DegradationMode, 99), reason="unknown mode", actor=operator()
        ),
    ],
    ids=["empty-reason", "long-reason", "no-actor", "no-mode", "unknown-mode"],
)
async def test_invalid_requests_are_refused(stub: Stub, request_message: object) -> None:
    call = (
        stub.SetKillSwitch
        if isinstance(request_message, control_pb2.SetKillSwitchRequest)
        else stub.SetDegradationMode
    )

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call(request_message)

    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_concurrent_changes_all_land_with_distinct_revisions(stub: Stub) -> None:
    reasons = [f"concurrent change {i}" for i in range(5)]

    results = await asyncio.gather(*(_halt(stub, reason) for reason in reasons))

    assert len({r.revision for r in results}) == len(reasons)
    recent = (
        await stub.ListControlChanges(control_pb2.ListControlChangesRequest(limit=100))
    ).changes
    ours = [c for c in recent if c.reason in reasons]
    changes = [c for c in ours if c.outcome == control_pb2.CHANGE_OUTCOME_APPLIED]
    assert sorted(c.reason for c in changes) == sorted(reasons)
    # An attempt that lost the race is on record as such, never left open.
    assert {c.outcome for c in ours} <= {
        control_pb2.CHANGE_OUTCOME_APPLIED,
        control_pb2.CHANGE_OUTCOME_NOT_APPLIED,
    }
    # Each write named the revision it replaced: the audit trail is one unbroken chain.
    by_revision = sorted(changes, key=lambda c: c.after.revision)
    for earlier, later in itertools.pairwise(by_revision):
        assert later.before.revision == earlier.after.revision


XFCC = (
    'By=spiffe://cluster.local/ns/brokermesh-control/sa/control-plane;Hash=0f3a;Subject="";'
    "URI=spiffe://cluster.local/ns/brokermesh-ops/sa/ops-console"
)


async def test_forwarded_client_cert_is_ignored_where_no_sidecar_vouches_for_it(
    stub: Stub,
) -> None:
    response = await stub.SetKillSwitch(
        control_pb2.SetKillSwitchRequest(
            trading_halted=True, reason="claims a mesh identity", actor=operator()
        ),
        metadata=(("x-forwarded-client-cert", XFCC),),
    )

    change = (
        await stub.ListControlChanges(control_pb2.ListControlChangesRequest(limit=1))
    ).changes[0]
    assert change.change_id == response.controls.change_id
    assert change.authenticated_caller == ""


@pytest.fixture(scope="module")
def meshed_control_plane(
    nats_server: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ControlPlaneProcess]:
    """A control plane configured as behind an Istio sidecar, which sets the XFCC header."""
    process = ControlPlaneProcess(
        nats_server.url,
        tmp_path_factory.mktemp("meshed-control-plane"),
        {"BROKERMESH_CONTROL_PLANE_TRUST_FORWARDED_CLIENT_CERT": "true"},
    )
    try:
        process.start()
        yield process
    finally:
        process.stop()


async def test_behind_a_sidecar_the_callers_mesh_identity_is_recorded_beside_the_operator(
    meshed_control_plane: ControlPlaneProcess,
) -> None:
    async with grpc.aio.insecure_channel(meshed_control_plane.address) as channel:
        meshed = Stub(channel)
        try:
            response = await meshed.SetKillSwitch(
                control_pb2.SetKillSwitchRequest(
                    trading_halted=True, reason="halt from the console", actor=operator("ops-bob")
                ),
                metadata=(("x-forwarded-client-cert", XFCC),),
            )
            changes = (
                await meshed.ListControlChanges(control_pb2.ListControlChangesRequest(limit=1))
            ).changes
        finally:
            await meshed.SetKillSwitch(
                control_pb2.SetKillSwitchRequest(
                    trading_halted=False, reason="console test over", actor=operator("ops-bob")
                )
            )

    assert changes[0].change_id == response.controls.change_id
    assert changes[0].actor == operator("ops-bob")
    assert changes[0].authenticated_caller == (
        "spiffe://cluster.local/ns/brokermesh-ops/sa/ops-console"
    )
