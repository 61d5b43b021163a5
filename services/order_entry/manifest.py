"""Manifest of the order-entry service: its plane, port, and the services it calls."""

from brokermesh.mesh.manifest import Backend, Plane, ServiceManifest

MANIFEST = ServiceManifest(
    name="order-entry",
    plane=Plane.DATA,
    grpc_port=50051,
    serves=("brokermesh.trading.v1.OrderEntryService",),
    calls=("oms", "risk", "router", "venue-gateway"),
    backends=(Backend.POSTGRES, Backend.NATS),
)
