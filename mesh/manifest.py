"""What each service is: its name, plane, default port, and whom it may call.

A service's manifest is its client configuration: the client factory dials
only the services its manifest lists in ``calls``, so the call graph the
deployment allows (Istio rules, NetworkPolicies) can be derived from the
manifests and checked against them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Plane(enum.StrEnum):
    """Which side of the control-plane / data-plane split a service lives on."""

    CONTROL = "control"
    DATA = "data"


class Backend(enum.StrEnum):
    """Stateful engines a service talks to."""

    NATS = "nats"
    POSTGRES = "postgres"


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceManifest:
    """Static description of one service."""

    #: DNS-style name, also the Kubernetes Deployment and ServiceAccount name.
    name: str
    plane: Plane
    #: Default gRPC port (health, and the service's own API if it has one).
    grpc_port: int
    #: Fully qualified gRPC services this process serves, besides health.
    serves: tuple[str, ...] = ()
    #: Names of the services this one calls over gRPC.
    calls: tuple[str, ...] = ()
    #: Stateful engines it uses.
    backends: tuple[Backend, ...] = ()
    #: Extra listening ports by purpose, such as {"http": 8080} or {"fix": 9881}.
    extra_ports: tuple[tuple[str, int], ...] = ()
    #: Names of services it reaches over FIX (TCP) rather than gRPC.
    fix_peers: tuple[str, ...] = ()
    #: Python module run as the process entry point.
    module: str = ""
    #: Whether the service keeps no state of its own and may scale out freely.
    stateless: bool = True

    @property
    def entry_module(self) -> str:
        return self.module or f"brokermesh.services.{self.name.replace('-', '_')}"
