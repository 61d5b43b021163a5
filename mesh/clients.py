"""Client factory: channels to the services a manifest allows, with timeouts and retries.

Both come from the contracts. Each channel carries a gRPC service config in
which methods declared idempotent (``idempotency_level``) are retried on
UNAVAILABLE. Every stub method gives each call the timeout its method
declares (``(brokermesh.common.v1.timeout_ms)``) unless the caller passes
``timeout=`` to replace it, cuts either to the current request's remaining
budget, and forwards the trace context and correlation id. A failed call
raises :class:`~brokermesh.mesh.errors.DependencyError`, the callee's
``AioRpcError`` carrying the callee's name.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast

import grpc
from google.protobuf import descriptor, descriptor_pb2, descriptor_pool
from opentelemetry import propagate

from brokermesh.common.v1 import options_pb2
from brokermesh.mesh.deadlines import deadline_var
from brokermesh.mesh.errors import ConfigError, DependencyError
from brokermesh.mesh.logging import correlation_id_var
from brokermesh.mesh.manifest import ServiceManifest
from brokermesh.mesh.pipeline import CORRELATION_HEADER
from brokermesh.mesh.server import GRPC_OPTIONS

if TYPE_CHECKING:
    from google.protobuf.internal.extension_dict import _ExtensionFieldDescriptor

Stub = TypeVar("Stub")

#: The option's handle, typed as an extension of MethodOptions (the generated stub says
#: only FieldDescriptor).
_TIMEOUT_MS = cast(
    "_ExtensionFieldDescriptor[descriptor_pb2.MethodOptions, int]", options_pb2.timeout_ms
)

#: Retries stop while more than half of a channel's 10 tokens are spent: each failed
#: attempt costs one, each success gives back 0.1. An outage of a callee then costs about
#: one attempt per call instead of max_attempts, so retries at several hops of a call chain
#: cannot multiply into a storm.
_RETRY_THROTTLING = {"maxTokens": 10, "tokenRatio": 0.1}

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
            # No "timeout" entry: each call carries its own (see _Method). gRPC
            # would take the shorter of the two, so an explicit longer timeout
            # could not replace the method's; and grpcio cuts a service-config
            # timeout by about a second (grpc/grpc#34547; on 1.85.3 a 1 s
            # timeout expires at once and a 2 s one after 0.2 s).
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
    return {"methodConfig": method_configs, "retryThrottling": dict(_RETRY_THROTTLING)}


def outgoing_metadata(extra: Sequence[tuple[str, str]] = ()) -> tuple[tuple[str, str], ...]:
    """Metadata for a downstream call: the trace context and the correlation id."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    metadata = [*extra, *carrier.items()]
    correlation_id = correlation_id_var.get()
    if correlation_id:
        metadata.append((CORRELATION_HEADER, correlation_id))
    return tuple(metadata)


def method_timeout_s(method: descriptor.MethodDescriptor) -> float | None:
    """The timeout ``method``'s contract declares, in seconds, or None if it declares none."""
    options = method.GetOptions()
    if not options.HasExtension(_TIMEOUT_MS):
        return None
    return options.Extensions[_TIMEOUT_MS] / 1000


class _Method:
    """One stub method, called with its timeout, the request's remaining budget and ids.

    A wrapper rather than a grpc.aio client interceptor: interceptors run
    every call through extra tasks and call objects, which cost more CPU per
    call than the whole of what this does.
    """

    __slots__ = ("_callee", "_multicallable", "_timeout_s")

    def __init__(self, multicallable: Callable[..., Any], timeout_s: float, callee: str) -> None:
        self._multicallable = multicallable
        self._timeout_s = timeout_s
        self._callee = callee

    def __call__(
        self,
        request: Any,
        *,
        timeout: float | None = None,
        metadata: Sequence[tuple[str, str]] = (),
        **kwargs: Any,
    ) -> Awaitable[Any]:
        """Start the call now; the awaitable gives its response."""
        # An explicit timeout replaces the method's own; the budget caps both.
        timeout_s = self._timeout_s if timeout is None else timeout
        deadline = deadline_var.get()
        if deadline is not None:
            timeout_s = min(timeout_s, max(0.0, deadline - time.monotonic()))
        call = self._multicallable(
            request, timeout=timeout_s, metadata=outgoing_metadata(metadata), **kwargs
        )
        return self._response(call)

    async def _response(self, call: Awaitable[Any]) -> Any:
        try:
            return await call
        except grpc.aio.AioRpcError as exc:
            raise DependencyError(self._callee, exc) from exc


class _BudgetedStub:
    """A generated stub whose every method goes through :class:`_Method`."""

    def __init__(
        self,
        stub: object,
        callee: str,
        timeouts_s: Mapping[str, float | None],
        default_timeout_s: float,
    ) -> None:
        self._stub = stub
        self._callee = callee
        self._timeouts_s = timeouts_s
        self._default_timeout_s = default_timeout_s

    def __getattr__(self, name: str) -> _Method:
        timeout_s = self._timeouts_s.get(name)
        method = _Method(
            getattr(self._stub, name),
            self._default_timeout_s if timeout_s is None else timeout_s,
            self._callee,
        )
        setattr(self, name, method)  # built once per method name
        return method


class ClientFactory:
    """Opens one channel per callee and hands out stubs on it.

    Only callees the caller's manifest lists in ``calls`` can be reached:
    asking for another is a configuration error, so the manifest stays the
    complete record of the call graph. ``default_timeout_s`` is the timeout
    of methods whose contract declares none (such as gRPC health).
    """

    def __init__(
        self,
        manifest: ServiceManifest,
        addresses: Mapping[str, str],
        *,
        default_timeout_s: float = 1.0,
        serves: Mapping[str, tuple[str, ...]],
    ) -> None:
        self._manifest = manifest
        self._addresses = addresses
        self._default_timeout_s = default_timeout_s
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
        stub = stub_class(self.channel(callee))
        timeouts_s = _declared_timeouts_s(self._serves[callee], stub_class)
        return cast(Stub, _BudgetedStub(stub, callee, timeouts_s, self._default_timeout_s))

    async def close(self, grace_s: float | None = None) -> None:
        """Close every channel; safe to call more than once."""
        channels, self._channels = self._channels, {}
        for channel in channels.values():
            await channel.close(grace_s)


def _declared_timeouts_s(
    grpc_services: tuple[str, ...], stub_class: Callable[..., object]
) -> dict[str, float | None]:
    """Each method's declared timeout, for the service among ``grpc_services`` that
    ``stub_class`` (generated as ``<Service>Stub``) is the stub of."""
    name = getattr(stub_class, "__name__", "").removesuffix("Stub")
    pool = descriptor_pool.Default()
    for full_name in grpc_services:
        service = pool.FindServiceByName(full_name)
        if service.name == name:
            return {method.name: method_timeout_s(method) for method in service.methods}
    return {}
