"""A real control-plane process for tests, and small helpers shared by the test modules."""

from __future__ import annotations

from pathlib import Path

from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy

from brokermesh.common.v1 import common_pb2
from brokermesh.control.v1 import control_pb2
from brokermesh.mesh import controls as mesh_controls
from tests.processes import ServiceProcess


def operator(ops_id: str = "ops-test") -> common_pb2.Actor:
    return common_pb2.Actor(type=common_pb2.ACTOR_TYPE_OPERATOR, id=ops_id)


class ControlPlaneProcess(ServiceProcess):
    """One control-plane process at a fixed address; can be killed and started again."""

    def __init__(self, nats_url: str, data_dir: Path, env: dict[str, str] | None = None) -> None:
        super().__init__(
            "brokermesh.services.control_plane",
            data_dir,
            {"BROKERMESH_NATS_URL": nats_url, **(env or {})},
            log_name="control-plane.log",
        )


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
