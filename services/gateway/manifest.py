"""Manifest of the gateway service: its plane, port, and the services it calls."""

from brokermesh.mesh.manifest import Backend, Plane, ServiceManifest

MANIFEST = ServiceManifest(
    name="gateway",
    plane=Plane.DATA,
    grpc_port=50050,
    calls=("order-entry", "ledger"),
    extra_ports=(("http", 8080),),
)
