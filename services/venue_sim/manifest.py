"""Manifests of the two simulated venues; each runs as its own process."""

from brokermesh.mesh.manifest import Backend, Plane, ServiceManifest

XNAS = ServiceManifest(
    name="venue-xnas",
    plane=Plane.DATA,
    grpc_port=50061,
    backends=(Backend.NATS,),
    extra_ports=(("fix", 9881),),
    module="brokermesh.services.venue_sim",
    stateless=False,
)

ARCA = ServiceManifest(
    name="venue-arca",
    plane=Plane.DATA,
    grpc_port=50062,
    backends=(Backend.NATS,),
    extra_ports=(("fix", 9882),),
    module="brokermesh.services.venue_sim",
    stateless=False,
)

MANIFESTS = (XNAS, ARCA)
