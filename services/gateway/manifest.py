"""Manifest of the gateway service: its plane, port, and the services it calls."""

from brokermesh.mesh.manifest import Backend, Plane, ServiceManifest

MANIFEST = ServiceManifest(
    name="gateway",
    plane=Plane.DATA,
    grpc_port=50050,
    calls=("order-entry", "ledger"),
    backends=(Backend.POSTGRES,),
    extra_ports=(("http", 8080),),
)

#: gRPC services the gateway exposes over HTTP/JSON, through their google.api.http rules.
FRONTS: tuple[str, ...] = (
    "brokermesh.trading.v1.OrderEntryService",
    "brokermesh.trading.v1.OrderQueryService",
)
