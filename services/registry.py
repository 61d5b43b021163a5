"""Every service of the platform, in the order ``brokermesh up`` starts them."""

from __future__ import annotations

from typing import TypeVar

from brokermesh.mesh import config
from brokermesh.mesh.clients import ClientFactory
from brokermesh.mesh.config import ServiceSettings, parse_upstreams
from brokermesh.mesh.manifest import ServiceManifest
from brokermesh.services.control_plane.manifest import MANIFEST as CONTROL_PLANE
from brokermesh.services.gateway.manifest import MANIFEST as GATEWAY
from brokermesh.services.ledger.manifest import MANIFEST as LEDGER
from brokermesh.services.oms.manifest import MANIFEST as OMS
from brokermesh.services.order_entry.manifest import MANIFEST as ORDER_ENTRY
from brokermesh.services.risk.manifest import MANIFEST as RISK
from brokermesh.services.router.manifest import MANIFEST as ROUTER
from brokermesh.services.trade_capture.manifest import MANIFEST as TRADE_CAPTURE
from brokermesh.services.venue_gateway.manifest import MANIFEST as VENUE_GATEWAY
from brokermesh.services.venue_sim.manifest import MANIFESTS as VENUES

S = TypeVar("S", bound=ServiceSettings)

#: Dependencies first: venues and the control plane, then the path from the
#: far end (trade capture) back to the edge (gateway).
MANIFESTS: tuple[ServiceManifest, ...] = (
    CONTROL_PLANE,
    *VENUES,
    LEDGER,
    TRADE_CAPTURE,
    VENUE_GATEWAY,
    OMS,
    RISK,
    ROUTER,
    ORDER_ENTRY,
    GATEWAY,
)


def by_name(name: str) -> ServiceManifest:
    """Return the manifest called ``name``; raise KeyError naming it otherwise."""
    for manifest in MANIFESTS:
        if manifest.name == name:
            return manifest
    raise KeyError(f"no service named {name!r}")


def clients_for(manifest: ServiceManifest, settings: ServiceSettings) -> ClientFactory:
    """A client factory for ``manifest``: callees at their default loopback ports,
    overridden by ``settings.upstreams``."""
    addresses = {m.name: f"127.0.0.1:{m.grpc_port}" for m in MANIFESTS}
    addresses.update(parse_upstreams(settings.upstreams))
    return ClientFactory(manifest, addresses, serves={m.name: m.serves for m in MANIFESTS})


def load_settings(cls: type[S], manifest: ServiceManifest) -> S:
    """Settings of ``manifest``'s service: its ports from the manifest, then the environment."""
    defaults: dict[str, object] = {"port": manifest.grpc_port}
    defaults.update({f"{purpose}_port": port for purpose, port in manifest.extra_ports})
    return config.load(cls, manifest.name, defaults=defaults)
