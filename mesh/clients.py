"""Client factory: channels to the services a manifest allows, with timeouts and retries.

Each channel carries a gRPC service config derived from the contracts:
methods whose contract declares them idempotent (``idempotency_level``) are
retried on UNAVAILABLE. Every stub method gives each call the per-call
timeout ceiling, cut to the current request's remaining budget, and forwards
the trace context and correlation id.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar, cast

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from opentelemetry import propagate

from brokermesh.mesh.deadlines import downstream_timeout_s
from brokermesh.mesh.errors import ConfigError
from brokermesh.mesh.logging import correlation_id_var
from brokermesh.mesh.manifest import ServiceManifest
from brokermesh.mesh.pipeline import CORRELATION_HEADER
from brokermesh.mesh.server import GRPC_OPTIONS

Stub = TypeVar("Stub")

_RETRYABLE = (
    descriptor_pb2.MethodOptions.IDEMPOTENT,
    descriptor_pb2.MethodOptions.NO_SIDE_EFFECTS,
)


def service_config(grpc_services: tuple[str, ...], *, max_attempts: int = 3) -> dict[str, Any]:
    """Build a gRPC service config for ``grpc_services`` from their descriptors."""
    pool = descriptor_pool.Default()
    method_configs: list[dict[str, Any]] = []
    for full_name in grpc_services:
        service = pool.FindServiceByName(full_name)
        for method in service.methods:
            # No "timeout" entry: grpcio 1.85 expires calls at once when a
            # service-config timeout is near a second (grpc/grpc#34547), and
            # the client interceptor already sets every call's deadline.
            config: dict[str, Any] = {"name": [{"service": full_name, "method": method.name}]}
            if method.GetOptions().idempotency_level in _RETRYABLE:
                config["retryPolicy"] = {
                    "maxAttempts": max_attempts,
                    "initialBackoff": "0.01s",
                    "maxBackoff": "0.1s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                }
            method_configs.append(config)
    return {"methodConfig": method_configs}


def outgoing_metadata(extra: Sequence[tuple[str, str]] = ()) -> tuple[tuple[str, str], ...]:
    """Metadata for a downstream call: the trace context and the correlation id."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    metadata = [*extra, *carrier.items()]
    correlation_id = correlation_id_var.get()
    if correlation_id:
        metadata.append((CORRELATION_HEADER, correlation_id))
    return tuple(metadata)


class _Method:
    """One stub method, called with the request's remaining budget and propagated ids.

    A wrapper rather than a grpc.aio client interceptor: interceptors run
    every call through extra tasks and call objects, which cost more CPU per
    call than the whole of what this does.
    """

    def __init__(self, multicallable: Callable[..., Any], ceiling_s: float) -> None:
        self._multicallable = multicallable
        self._ceiling_s = ceiling_s

    def __call__(
        self,
        request: Any,
        *,
        timeout: float | None = None,
        metadata: Sequence[tuple[str, str]] = (),
        **kwargs: Any,
    ) -> Any:
        budget = downstream_timeout_s(self._ceiling_s)
        return self._multicallable(
            request,
            timeout=budget if timeout is None else min(timeout, budget),
            metadata=outgoing_metadata(metadata),
            **kwargs,
        )


class _BudgetedStub:
    """A generated stub whose every method goes through :class:`_Method`."""

    def __init__(self, stub: object, ceiling_s: float) -> None:
        self._stub = stub
        self._ceiling_s = ceiling_s

    def __getattr__(self, name: str) -> _Method:
        method = _Method(getattr(self._stub, name), self._ceiling_s)
        setattr(self, name, method)  # built once per method name
        return method


class ClientFactory:
    """Opens one channel per callee and hands out stubs on it.

    Only callees the caller's manifest lists in ``calls`` can be reached:
    asking for another is a configuration error, so the manifest stays the
    complete record of the call graph.
    """

    def __init__(
        self,
        manifest: ServiceManifest,
        addresses: Mapping[str, str],
        *,
        timeout_s: float = 1.0,
        serves: Mapping[str, tuple[str, ...]],
    ) -> None:
        self._manifest = manifest
        self._addresses = addresses
        self._timeout_s = timeout_s
        self._serves = serves
        self._channels: dict[str, grpc.aio.Channel] = {}

    def channel(self, callee: str) -> grpc.aio.Channel:
        """The shared channel to ``callee``; created on first use."""
        if callee not in self._manifest.calls:
            raise ConfigError(
                f"{self._manifest.name} does not declare a call to {callee}", field="calls"
            )
        channel = self._channels.get(callee)
        if channel is None:
            config = service_config(self._serves[callee])
            channel = grpc.aio.insecure_channel(
                self._addresses[callee],
                options=(
                    *GRPC_OPTIONS,
                    ("grpc.service_config", json.dumps(config)),
                    ("grpc.enable_retries", 1),
                ),
            )
            self._channels[callee] = channel
        return channel

    def stub(self, callee: str, stub_class: Callable[[grpc.aio.Channel], Stub]) -> Stub:
        """A stub of ``stub_class`` bound to the channel to ``callee``."""
        return cast(Stub, _BudgetedStub(stub_class(self.channel(callee)), self._timeout_s))

    async def close(self, grace_s: float | None = None) -> None:
        """Close every channel; safe to call more than once."""
        channels, self._channels = self._channels, {}
        for channel in channels.values():
            await channel.close(grace_s)
