"""The gateway's error envelope and the one table that maps gRPC status codes to HTTP.

Every failure answers ``{"error": {"code", "message", "field"}}``. ``code`` is
stable for clients to branch on: the gateway's own codes for what it refuses
itself, and for upstream failures the ``x-error-code`` trailer the service
pipeline writes (the status code's name when there is none).
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc
import orjson
from starlette.responses import Response

#: HTTP status for each gRPC status; anything else is 500.
HTTP_STATUS: Mapping[grpc.StatusCode, int] = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.FAILED_PRECONDITION: 422,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}

#: Trailers in which upstream services name the stable error code and the field.
CODE_TRAILER = "x-error-code"
FIELD_TRAILER = "x-error-field"


class ApiError(Exception):
    """A request the gateway answers with an error envelope."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field or None
        self.headers = dict(headers or {})

    def response(self) -> Response:
        """The error as a JSON response."""
        body = {"error": {"code": self.code, "message": self.message, "field": self.field}}
        return Response(
            orjson.dumps(body),
            status_code=self.status,
            headers=self.headers,
            media_type="application/json",
        )


def invalid(field: str, message: str) -> ApiError:
    """A 400 naming the field the request got wrong."""
    return ApiError(400, "INVALID_ARGUMENT", message, field=field)


def unauthenticated(message: str) -> ApiError:
    """A 401 carrying the challenge RFC 6750 asks for."""
    challenge = 'Bearer realm="brokermesh", error="invalid_token"'
    return ApiError(401, "UNAUTHENTICATED", message, headers={"WWW-Authenticate": challenge})


def forbidden(code: str, message: str, *, field: str | None = None) -> ApiError:
    """A 403 for a caller who is known but not entitled."""
    return ApiError(403, code, message, field=field)


def from_rpc_error(error: grpc.aio.AioRpcError) -> ApiError:
    """An upstream failure as the gateway answers it, keeping its stable code and field."""
    trailers = _metadata(error.trailing_metadata())
    status = error.code()
    code = trailers.get(CODE_TRAILER) or status.name
    message = error.details() or status.name
    return ApiError(HTTP_STATUS.get(status, 500), code, message, field=trailers.get(FIELD_TRAILER))


def _metadata(metadata: object) -> dict[str, str]:
    """String-valued entries of gRPC metadata (binary ``-bin`` entries are skipped)."""
    found: dict[str, str] = {}
    for key, value in metadata or ():  # type: ignore[attr-defined]
        if isinstance(value, str):
            found[key] = value
    return found
