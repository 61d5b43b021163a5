"""Per-request telemetry of the gateway: the root span, one log line and the HTTP metrics.

:class:`RequestTelemetry` wraps the whole Starlette app. Each request gets a
SERVER span that starts a new trace (a client's ``traceparent`` is not
adopted: the gateway is where the platform's traces begin), the trace and
correlation ids in the logging context, the deadline budget its upstream calls
spend, and on completion one INFO line with the route template, status and
duration (never the token or the body) and the HTTP request metrics.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from brokermesh.mesh import telemetry
from brokermesh.mesh.deadlines import deadline_var
from brokermesh.mesh.logging import correlation_id, correlation_id_var, order_id_var, trace_id_var
from brokermesh.mesh.pipeline import CORRELATION_HEADER

_LOGGER = logging.getLogger(__name__)
_TRACER = trace.get_tracer(__name__)
#: Where the request's :class:`RequestInfo` lives in the ASGI scope.
SCOPE_KEY = "brokermesh.request"
#: Route label of requests that matched no route, so unknown paths cannot explode the labels.
UNMATCHED = "unmatched"

HTTP_REQUESTS = Counter(
    "brokermesh_http_requests",
    "HTTP requests answered by the gateway, by route template and status.",
    ["route", "status"],
)
HTTP_SECONDS = Histogram(
    "brokermesh_http_request_duration_seconds",
    "Time from receiving an HTTP request to finishing its response.",
    ["route"],
    buckets=telemetry.LATENCY_BUCKETS_S,
)


@dataclass(slots=True)
class RequestInfo:
    """What the endpoint learns about a request, for the log line and metrics."""

    started: float
    order_id: str = ""


def request_info(scope: Scope) -> RequestInfo:
    """The :class:`RequestInfo` of the request ``scope`` belongs to."""
    info: RequestInfo = scope[SCOPE_KEY]
    return info


def observe_segment(scope: Scope, segment: str) -> None:
    """Record ``segment`` of the pre-venue path as ending now, begun at the request's receipt:
    ``gateway_auth`` just before the upstream call, ``total`` once order entry answered an
    order whose NewOrderSingle is with the FIX engine."""
    elapsed = time.perf_counter() - request_info(scope).started
    telemetry.PREVENUE_SEGMENT_SECONDS.labels(segment).observe(elapsed)


class RequestTelemetry:
    """ASGI middleware: root span, logging context, log line and metrics per HTTP request."""

    def __init__(self, app: ASGIApp, *, budget_s: float) -> None:
        self._app = app
        self._budget_s = budget_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        info = RequestInfo(started=time.perf_counter())
        scope[SCOPE_KEY] = info
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        # An empty context: the span is a root whatever the caller's trace headers say.
        with _TRACER.start_as_current_span(
            f"{scope['method']} {scope['path']}",
            context=otel_context.Context(),
            kind=trace.SpanKind.SERVER,
            record_exception=False,
            attributes={"http.request.method": scope["method"]},
        ) as span:
            self._enter_request(scope, info)
            try:
                await self._app(scope, receive, send_status)
            finally:
                self._finish(scope, span, info, status)

    def _enter_request(self, scope: Scope, info: RequestInfo) -> None:
        trace_id_var.set(telemetry.current_trace_id())
        correlation_id_var.set(correlation_id(_header(scope, CORRELATION_HEADER)))
        order_id_var.set("")
        deadline_var.set(time.monotonic() + self._budget_s)

    def _finish(self, scope: Scope, span: Any, info: RequestInfo, status: int) -> None:
        elapsed = time.perf_counter() - info.started
        route = _route_template(scope)
        span.update_name(f"{scope['method']} {route}")
        span.set_attribute("http.route", route)
        span.set_attribute("http.response.status_code", status)
        if status >= 500:
            span.set_status(trace.StatusCode.ERROR)
        if info.order_id:
            span.set_attribute("brokermesh.order_id", info.order_id)
            order_id_var.set(info.order_id)
        HTTP_REQUESTS.labels(route, str(status)).inc()
        HTTP_SECONDS.labels(route).observe(elapsed)
        _LOGGER.info(
            "%s %s %d",
            scope["method"],
            route,
            status,
            extra={
                "http_method": scope["method"],
                "route": route,
                "status": status,
                "duration_ms": round(elapsed * 1000, 3),
            },
        )


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED


def _header(scope: Scope, name: str) -> str:
    wanted = name.encode()
    for key, value in scope.get("headers", ()):
        if key == wanted:
            return str(value.decode("latin-1"))
    return ""
