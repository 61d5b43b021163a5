"""The runtime's root exception and the one place that maps error kinds to gRPC status codes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import grpc


class MeshError(Exception):
    """Root of every error a brokermesh service raises on purpose.

    Each subclass names the gRPC status it becomes at the service edge, so a
    handler raises a domain error and the server pipeline aborts the call with
    a precise code and the error's message. ``field`` names the offending
    request field when there is one.
    """

    status: ClassVar[grpc.StatusCode] = grpc.StatusCode.INTERNAL

    def __init__(self, message: str, *, field: str = "", code: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.code = code or type(self).__name__


class InvalidArgument(MeshError):
    status = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(MeshError):
    status = grpc.StatusCode.NOT_FOUND


class AlreadyExists(MeshError):
    status = grpc.StatusCode.ALREADY_EXISTS


class PermissionDenied(MeshError):
    status = grpc.StatusCode.PERMISSION_DENIED


class FailedPrecondition(MeshError):
    status = grpc.StatusCode.FAILED_PRECONDITION


class Aborted(MeshError):
    """A concurrent writer won; the caller may retry with fresh state."""

    status = grpc.StatusCode.ABORTED


class Unavailable(MeshError):
    status = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(MeshError):
    status = grpc.StatusCode.DEADLINE_EXCEEDED


class ConfigError(MeshError):
    """Configuration that cannot be used; raised at start-up, never per request."""

    status = grpc.StatusCode.FAILED_PRECONDITION


class DependencyError(grpc.aio.AioRpcError):
    """A failed call to another service of the mesh, carrying that service's name.

    It is the callee's :class:`grpc.aio.AioRpcError` (same code, details and
    trailers), so a handler that acts on a direct call's status reads it as
    before; the name lets the pipeline say which dependency failed when it
    passes the failure on (see :data:`DEPENDENCY_STATUS`).
    """

    def __init__(self, dependency: str, error: grpc.aio.AioRpcError) -> None:
        super().__init__(
            error.code(),
            error.initial_metadata(),
            error.trailing_metadata(),
            error.details(),
            error.debug_error_string(),
        )
        self.dependency = dependency


#: The status a service answers with when a dependency's call failed and the handler let
#: the failure through; codes not listed become INTERNAL. Transient failures keep their code
#: so that the edge decides about retrying. What a dependency finds missing or refuses is
#: this service's precondition, not the caller's request: the caller never sent the fields
#: a dependency's INVALID_ARGUMENT is about, so that one is an INTERNAL fault.
DEPENDENCY_STATUS: Mapping[grpc.StatusCode, grpc.StatusCode] = {
    grpc.StatusCode.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED: grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    # A dependency that cancelled the call was going away (shutting down).
    grpc.StatusCode.CANCELLED: grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.ABORTED: grpc.StatusCode.ABORTED,
    grpc.StatusCode.FAILED_PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.NOT_FOUND: grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.ALREADY_EXISTS: grpc.StatusCode.FAILED_PRECONDITION,
}
