"""Manifest of the ledger service: its plane, port, and the services it calls."""

from brokermesh.mesh.manifest import Backend, Plane, ServiceManifest

MANIFEST = ServiceManifest(
    name="ledger",
    plane=Plane.DATA,
    grpc_port=50057,
    serves=("brokermesh.trading.v1.OrderQueryService",),
    backends=(Backend.POSTGRES, Backend.NATS),
)
