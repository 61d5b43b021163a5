"""Manifest of the control-plane service: its plane, port, and the services it calls."""

from brokermesh.mesh.manifest import Backend, Plane, ServiceManifest

MANIFEST = ServiceManifest(
    name="control-plane",
    plane=Plane.CONTROL,
    grpc_port=50070,
    serves=("brokermesh.control.v1.ControlPlaneService",),
    backends=(Backend.NATS,),
)
