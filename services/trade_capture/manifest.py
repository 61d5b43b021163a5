"""Manifest of the trade-capture service: its plane, port, and the services it calls."""

from brokermesh.mesh.manifest import Backend, Plane, ServiceManifest

MANIFEST = ServiceManifest(
    name="trade-capture",
    plane=Plane.DATA,
    grpc_port=50056,
    serves=("brokermesh.trading.v1.TradeCaptureService",),
    # The reconciler asks the venue gateway for the status of unacknowledged orders.
    calls=("venue-gateway",),
    backends=(Backend.POSTGRES,),
)
