"""Manifest of the risk service: its plane, port, and the services it calls."""

from brokermesh.mesh.manifest import Backend, Plane, ServiceManifest

MANIFEST = ServiceManifest(
    name="risk",
    plane=Plane.DATA,
    grpc_port=50053,
    serves=("brokermesh.trading.v1.PreTradeRiskService",),
    backends=(Backend.POSTGRES, Backend.NATS),
)
