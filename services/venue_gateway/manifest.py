"""Manifest of the venue-gateway service: its plane, port, and the services it calls."""

from brokermesh.mesh.manifest import Backend, Plane, ServiceManifest

MANIFEST = ServiceManifest(
    name="venue-gateway",
    plane=Plane.DATA,
    grpc_port=50055,
    serves=("brokermesh.trading.v1.VenueGatewayService",),
    calls=("trade-capture",),
    backends=(Backend.NATS,),
    fix_peers=("venue-xnas", "venue-arca"),
    stateless=False,
)
