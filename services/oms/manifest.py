"""Manifest of the oms service: its plane, port, and the services it calls."""

from brokermesh.mesh.manifest import Backend, Plane, ServiceManifest

MANIFEST = ServiceManifest(
    name="oms",
    plane=Plane.DATA,
    grpc_port=50052,
    serves=("brokermesh.trading.v1.OrderValidationService",),
    backends=(Backend.POSTGRES, Backend.NATS),
)
