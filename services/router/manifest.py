"""Manifest of the router service: its plane, port, and the services it calls."""

from brokermesh.mesh.manifest import Backend, Plane, ServiceManifest

MANIFEST = ServiceManifest(
    name="router",
    plane=Plane.DATA,
    grpc_port=50054,
    serves=("brokermesh.trading.v1.SmartOrderRouterService",),
    calls=("venue-gateway",),
    backends=(Backend.NATS,),
)
