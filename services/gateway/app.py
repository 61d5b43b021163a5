"""The gateway application: its runtime pieces and the Starlette app built from the contracts.

:class:`GatewayApp` follows the service :class:`~brokermesh.mesh.server.App`
protocol, so ``mesh.server.start`` and ``stop`` drive its lifecycle next to
the gRPC health server: ``start`` reads the token-verification key, loads
the entitlements and opens the upstream channels; ``stop`` releases them.
"""

from __future__ import annotations

from typing import Any, cast

import grpc
import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from brokermesh.mesh.clients import ClientFactory
from brokermesh.mesh.errors import ConfigError
from brokermesh.mesh.keys import load_public_key
from brokermesh.mesh.manifest import ServiceManifest
from brokermesh.services import registry
from brokermesh.services.gateway import docs
from brokermesh.services.gateway.auth import TokenVerifier
from brokermesh.services.gateway.endpoints import Endpoint, Guard, Rpc, make_endpoint
from brokermesh.services.gateway.entitlements import Entitlements
from brokermesh.services.gateway.errors import ApiError
from brokermesh.services.gateway.manifest import FRONTS, MANIFEST
from brokermesh.services.gateway.observability import RequestTelemetry
from brokermesh.services.gateway.openapi import build_openapi
from brokermesh.services.gateway.routes import HttpBinding, derive_bindings, stub_class
from brokermesh.services.gateway.settings import GatewaySettings

#: Largest request body accepted; an order is a few hundred bytes.
MAX_BODY_BYTES = 64 * 1024


class GatewayApp:
    """The gateway's state between start and stop; serves HTTP through :meth:`http_app`.

    ``start`` and ``stop`` are each called once, in that order, by the server
    bootstrap; :meth:`http_app` may be called before ``start`` (its routes answer
    503 until the upstream channels exist).
    """

    def __init__(self, settings: GatewaySettings, *, manifest: ServiceManifest = MANIFEST) -> None:
        self.settings = settings
        self.bindings = derive_bindings(FRONTS)
        self.openapi = build_openapi(self.bindings)
        self.entitlements = Entitlements(
            settings.database_url, refresh_s=settings.entitlements_refresh_s
        )
        self._manifest = manifest
        self._clients: ClientFactory | None = None
        self._endpoints: dict[str, Endpoint] = {}
        #: API requests being served; beyond settings.max_in_flight new ones are shed.
        self._in_flight = 0

    @property
    def ready(self) -> bool:
        """Whether the upstream channels exist and requests can be served."""
        return len(self._endpoints) == len(self.bindings)

    async def start(self) -> None:
        """Read the public key, load entitlements, open the upstream channels."""
        verifier = TokenVerifier(
            self._public_key(), issuer=self.settings.jwt_issuer, audience=self.settings.jwt_audience
        )
        await self.entitlements.start()
        guard = Guard(verifier, self.entitlements)
        self._clients = registry.clients_for(self._manifest, self.settings)
        for binding in self.bindings:
            stub = self._clients.stub(
                _callee(self._manifest, binding.service), stub_class(binding.service)
            )
            rpc: Rpc = getattr(stub, binding.method.name)
            self._endpoints[binding.method.full_name] = make_endpoint(binding, rpc, guard)

    def register(self, server: grpc.aio.Server) -> None:
        """The gateway serves only health over gRPC: nothing to add."""

    async def stop(self) -> None:
        """Stop refreshing entitlements and close the upstream channels."""
        self._endpoints.clear()
        await self.entitlements.stop()
        if self._clients is not None:
            await self._clients.close(self.settings.shutdown_grace_s)

    def http_app(self) -> Starlette:
        """The Starlette app: one route per HTTP binding, plus docs, OpenAPI and health."""
        routes: list[BaseRoute] = [self._route(binding) for binding in self.bindings]
        routes += [
            Route("/openapi.json", self._openapi, methods=["GET"], include_in_schema=False),
            Route("/healthz", self._healthz, methods=["GET"], include_in_schema=False),
            *docs.routes(),
        ]
        return Starlette(
            routes=routes,
            middleware=[
                Middleware(RequestTelemetry, budget_s=self.settings.max_deadline_ms / 1000)
            ],
            exception_handlers={
                ApiError: _api_error,
                HTTPException: _http_error,
                Exception: _unexpected,
            },
            max_body_size=MAX_BODY_BYTES,
        )

    def _route(self, binding: HttpBinding) -> Route:
        limit = self.settings.max_in_flight

        async def endpoint(request: Request) -> Response:
            serve = self._endpoints.get(binding.method.full_name)
            if serve is None:
                raise ApiError(503, "UNAVAILABLE", "the gateway is not ready")
            # Shed before any work (token, JSON, the upstream call): a request queued behind
            # more than the platform drains within its budget only turns late.
            if limit and self._in_flight >= limit:
                raise ApiError(
                    429,
                    "OVERLOADED",
                    f"the gateway is serving {limit} requests already; retry later",
                    headers={"Retry-After": "1"},
                )
            self._in_flight += 1
            try:
                return await serve(request)
            finally:
                self._in_flight -= 1

        endpoint.__name__ = binding.method.name
        return Route(binding.path, endpoint, methods=[binding.verb], name=binding.method.name)

    def _public_key(self) -> Any:
        path = self.settings.jwt_public_key_path
        try:
            return load_public_key(path)
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"cannot read the token-verification key {path}: {exc} "
                f"(`brokermesh token --advisor ID --keys-dir {path.parent}` creates it)",
                field="jwt_public_key_path",
            ) from exc

    async def _openapi(self, request: Request) -> Response:
        return Response(orjson.dumps(self.openapi), media_type="application/json")

    async def _healthz(self, request: Request) -> Response:
        status = 200 if self.ready else 503
        body = {
            "status": "ok" if self.ready else "starting",
            "entitlements_loaded": self.entitlements.loaded,
        }
        return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def _callee(manifest: ServiceManifest, service: str) -> str:
    """The service in ``manifest.calls`` that serves the gRPC service ``service``."""
    for candidate in registry.MANIFESTS:
        if candidate.name in manifest.calls and service in candidate.serves:
            return candidate.name
    raise ConfigError(f"{manifest.name} calls no service serving {service}", field="calls")


async def _api_error(request: Request, exc: Exception) -> Response:
    return cast(ApiError, exc).response()


async def _http_error(request: Request, exc: Exception) -> Response:
    exc = cast(HTTPException, exc)
    codes = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 413: "PAYLOAD_TOO_LARGE"}
    code = codes.get(exc.status_code, "HTTP_ERROR")
    return ApiError(exc.status_code, code, str(exc.detail), headers=exc.headers).response()


async def _unexpected(request: Request, exc: Exception) -> Response:
    # Starlette re-raises the error after this answer, and uvicorn logs it once.
    return ApiError(500, "INTERNAL", "internal error").response()
