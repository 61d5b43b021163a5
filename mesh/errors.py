"""The runtime's root exception and the one place that maps error kinds to gRPC status codes."""

from __future__ import annotations

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
