"""The server pipeline every gRPC call passes through.

One interceptor, run once per call, does in order: adopt the caller's trace
and (sanitised) correlation ids, cap the deadline and publish the remaining
budget for downstream calls, validate the request against its contract's
protovalidate rules, run the handler, map domain errors, timeouts and
dependencies' failures to precise status codes, and write one log line plus
metrics with the call's real final code. One interceptor rather than five
keeps the hot path's per-call overhead to a single wrapper.

Only unary calls get all of that, so streaming methods are refused
(UNIMPLEMENTED) except those of the gRPC infrastructure services (health,
reflection), which carry no contract of ours.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import protovalidate
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from opentelemetry import propagate, trace
from prometheus_client import Counter

from brokermesh.mesh import telemetry
from brokermesh.mesh.deadlines import deadline_var
from brokermesh.mesh.errors import DEPENDENCY_STATUS, DependencyError, MeshError
from brokermesh.mesh.logging import (
    correlation_id,
    correlation_id_var,
    order_id_var,
    request_fields_var,
    trace_id_var,
)

_LOGGER = logging.getLogger(__name__)
_TRACER = trace.get_tracer(__name__)
_VALIDATOR = protovalidate.Validator()

CORRELATION_HEADER = "x-correlation-id"
#: Services whose streaming methods pass through unwrapped: gRPC's own, with no contract
#: of ours to validate and no downstream calls to budget.
INFRASTRUCTURE_SERVICES = frozenset(
    {
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    }
)
#: Client libraries by top-level package, and the dependency each one talks to.
_DEPENDENCIES = {"asyncpg": "PostgreSQL", "nats": "NATS"}

Handler = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]


class ServerPipeline(grpc.aio.ServerInterceptor):
    """Wraps every unary-unary handler of a server and refuses other kinds (see module)."""

    def __init__(self, service: str, *, max_deadline_s: float, max_in_flight: int = 0) -> None:
        self._service = service
        self._max_deadline_s = max_deadline_s
        #: Calls (health checks aside) served at once before new ones are shed; 0: no limit.
        self._max_in_flight = max_in_flight
        self._in_flight = 0
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}

    async def intercept_service(  # type: ignore[override]
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = handler_call_details.method
        cached = self._wrapped.get(method)
        if cached is not None:
            return cached

        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        if handler.unary_unary is not None:
            wrapped = grpc.unary_unary_rpc_method_handler(
                self._wrap(method, handler.unary_unary),  # type: ignore[arg-type]
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        elif _service_of(method) in INFRASTRUCTURE_SERVICES:
            wrapped = handler
        else:
            wrapped = self._refuse(method, handler)
        self._wrapped[method] = wrapped
        return wrapped

    def _wrap(self, method: str, inner: Handler) -> Handler:
        short = method.rsplit("/", 1)[-1]
        # Health checks are probed constantly; they get no span and no log line.
        quiet = method.startswith("/grpc.health.")
        # Metric children looked up once per method, not once per call.
        seconds = telemetry.GRPC_SECONDS.labels(self._service, short)
        handled: dict[grpc.StatusCode, Counter] = {}
        attributes = {"rpc.system": "grpc", "rpc.method": method}

        shed = telemetry.GRPC_HANDLED.labels(
            self._service, short, grpc.StatusCode.RESOURCE_EXHAUSTED.name
        )

        async def handle(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if quiet:
                return await serve(request, context)
            if self._max_in_flight and self._in_flight >= self._max_in_flight:
                # Shed at once, before any work: past this point every call waits behind the
                # others for the CPU, and all of them would miss their deadlines.
                shed.inc()
                await context.abort(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"{self._service} is serving {self._max_in_flight} calls already; retry later",
                )
            self._in_flight += 1
            try:
                return await serve(request, context)
            finally:
                self._in_flight -= 1

        async def serve(request: Any, context: grpc.aio.ServicerContext) -> Any:
            metadata = dict(context.invocation_metadata() or ())
            offered = metadata.get(CORRELATION_HEADER)
            correlation_id_var.set(correlation_id(offered if isinstance(offered, str) else ""))
            order_id_var.set("")
            request_fields_var.set({})
            remaining = context.time_remaining()
            if remaining is None or remaining > self._max_deadline_s:
                remaining = self._max_deadline_s
            deadline_var.set(time.monotonic() + remaining)
            started = time.perf_counter()
            code = grpc.StatusCode.OK
            cause = ""

            with _TRACER.start_as_current_span(
                short,
                context=propagate.extract(metadata),
                kind=trace.SpanKind.SERVER,
                attributes=attributes,
                record_exception=False,
                set_status_on_exception=False,
            ) as span:
                trace_id_var.set(telemetry.current_trace_id())
                try:
                    response = await self._run(inner, request, context)
                except _Abort as abort:
                    code, cause = abort.code, abort.cause
                    span.set_status(trace.StatusCode.ERROR, abort.message)
                    await context.abort(abort.code, abort.message, abort.trailers)
                except grpc.aio.AbortError:
                    # The handler aborted the call itself, with a code of its choosing.
                    code = context.code() or grpc.StatusCode.UNKNOWN
                    span.set_status(trace.StatusCode.ERROR, code.name)
                    raise
                except asyncio.CancelledError:
                    code = grpc.StatusCode.CANCELLED
                    span.set_status(trace.StatusCode.ERROR, code.name)
                    raise
                else:
                    # A handler may also set a code and return.
                    code = context.code() or code
                    return response
                finally:
                    elapsed = time.perf_counter() - started
                    seconds.observe(elapsed)
                    counter = handled.get(code)
                    if counter is None:
                        counter = telemetry.GRPC_HANDLED.labels(self._service, short, code.name)
                        handled[code] = counter
                    counter.inc()
                    if not quiet:
                        extra = {
                            "method": method,
                            "code": code.name,
                            "duration_ms": round(elapsed * 1000, 3),
                        }
                        if cause:
                            extra["cause"] = cause
                        extra.update(request_fields_var.get() or {})
                        _LOGGER.info("%s %s", short, code.name, extra=extra)

        return handle

    def _refuse(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        """A handler of the same kind that answers UNIMPLEMENTED without running ``handler``."""
        _LOGGER.error(
            "refusing %s: streaming methods would bypass validation and the deadline cap",
            method,
            extra={"method": method},
        )
        refused = telemetry.GRPC_HANDLED.labels(
            self._service, method.rsplit("/", 1)[-1], grpc.StatusCode.UNIMPLEMENTED.name
        )

        async def refuse(request: Any, context: grpc.aio.ServicerContext) -> None:
            refused.inc()
            await context.abort(
                grpc.StatusCode.UNIMPLEMENTED, f"{method} streams, and streaming is not served"
            )

        make = (
            grpc.unary_stream_rpc_method_handler
            if handler.unary_stream is not None
            else grpc.stream_unary_rpc_method_handler
            if handler.stream_unary is not None
            else grpc.stream_stream_rpc_method_handler
        )
        return make(
            refuse,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    async def _run(self, inner: Handler, request: Any, context: grpc.aio.ServicerContext) -> Any:
        if isinstance(request, Message):
            try:
                violations = _VALIDATOR.collect_violations(request)
            except (protovalidate.CompilationError, protovalidate.EvaluationError) as exc:
                # The contract's rules are broken, not the request.
                _LOGGER.exception("cannot evaluate the rules of %s", request.DESCRIPTOR.full_name)
                raise _Abort(grpc.StatusCode.INTERNAL, "internal error") from exc
            if violations:
                raise _Abort.invalid(violations)

        budget_s = max(0.0, (deadline_var.get() or 0.0) - time.monotonic())
        timer = asyncio.timeout(budget_s)
        try:
            async with timer:
                return await inner(request, context)
        except MeshError as exc:
            raise _Abort.from_error(exc) from exc
        except TimeoutError as exc:
            if timer.expired():
                raise _Abort(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline exceeded") from exc
            # A wait of the handler's own ran out (a pool, a query, a request to
            # NATS): the dependency is slow or gone, which is not the caller's
            # deadline.
            raise _Abort.timed_out(exc) from exc
        except (asyncio.CancelledError, grpc.aio.AbortError):
            raise
        except grpc.aio.AioRpcError as exc:
            # A downstream call failed and the handler let it through.
            raise _Abort.from_dependency(exc) from exc
        except Exception as exc:
            _LOGGER.exception("unhandled error")
            raise _Abort(grpc.StatusCode.INTERNAL, "internal error") from exc


class _Abort(Exception):
    """A call's final status, carried out of the handler to the one abort site."""

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        trailers: tuple[tuple[str, str | bytes], ...] = (),
        *,
        cause: str = "",
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.trailers = trailers
        #: What went wrong, for this service's log line only.
        self.cause = cause

    @classmethod
    def from_error(cls, error: MeshError) -> _Abort:
        trailers: tuple[tuple[str, str | bytes], ...] = (("x-error-code", error.code),)
        if error.field:
            trailers += (("x-error-field", error.field),)
        return cls(error.status, error.message, trailers)

    @classmethod
    def from_dependency(cls, error: grpc.aio.AioRpcError) -> _Abort:
        """A dependency's failure as this service answers it (see DEPENDENCY_STATUS)."""
        dependency = error.dependency if isinstance(error, DependencyError) else "a dependency"
        code = error.code()
        status = DEPENDENCY_STATUS.get(code, grpc.StatusCode.INTERNAL)
        details = error.details() or code.name
        cause = f"{dependency} answered {code.name}: {details}"
        if status in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.ABORTED):
            # Refusals are written for callers to read; a stable code travels with
            # them when the status is the dependency's own.
            stable = _trailer(error, "x-error-code") if status == code else ""
            trailers = (("x-error-code", stable or f"DEPENDENCY_{code.name}"),)
            return cls(status, f"{dependency}: {details}", trailers, cause=cause)
        messages = {
            grpc.StatusCode.UNAVAILABLE: f"{dependency} is unavailable",
            grpc.StatusCode.DEADLINE_EXCEEDED: f"{dependency} did not answer within the deadline",
            grpc.StatusCode.RESOURCE_EXHAUSTED: f"{dependency} is out of capacity",
        }
        message = messages.get(status) or f"{dependency} failed ({code.name})"
        return cls(status, message, (("x-error-code", f"DEPENDENCY_{code.name}"),), cause=cause)

    @classmethod
    def timed_out(cls, error: TimeoutError) -> _Abort:
        dependency = timed_out_dependency(error)
        return cls(
            grpc.StatusCode.UNAVAILABLE,
            f"{dependency or 'a dependency'} did not answer in time",
            (("x-error-code", "DEPENDENCY_TIMEOUT"),),
        )

    @classmethod
    def invalid(cls, violations: list[protovalidate.Violation]) -> _Abort:
        request = error_details_pb2.BadRequest()
        for violation in violations:
            request.field_violations.add(
                field=violation_field(violation), description=violation.proto.message
            )
        first = request.field_violations[0]
        message = "; ".join(f"{v.field}: {v.description}" for v in request.field_violations)
        status = status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message=message)
        status.details.add().Pack(request)
        return cls(
            grpc.StatusCode.INVALID_ARGUMENT,
            message,
            (
                ("x-error-code", "INVALID_ARGUMENT"),
                ("x-error-field", first.field),
                ("grpc-status-details-bin", status.SerializeToString()),
            ),
        )


def _service_of(method: str) -> str:
    """``/pkg.Service/Method`` -> ``pkg.Service``."""
    return method.rsplit("/", 2)[-2] if method.count("/") >= 2 else ""


def _trailer(error: grpc.aio.AioRpcError, key: str) -> str:
    for name, value in error.trailing_metadata() or ():
        if name == key and isinstance(value, str):
            return value
    return ""


def timed_out_dependency(error: BaseException) -> str:
    """The dependency whose client library raised ``error``, by the modules it passed
    through (the innermost known one wins), or "" when none is known."""
    found = ""
    tb = error.__traceback__
    while tb is not None:
        package = str(tb.tb_frame.f_globals.get("__name__", "")).partition(".")[0]
        found = _DEPENDENCIES.get(package, found)
        tb = tb.tb_next
    return found


def violation_field(violation: protovalidate.Violation) -> str:
    """Dotted path of the field a violation is about.

    Message-level rules carry no field path; their rule ids end in the field
    they guard (``submit_order.limit_price``), which names it instead.
    """
    path = violation.proto.field
    elements = path.elements if path is not None else ()
    if elements:
        return ".".join(element.field_name for element in elements)
    return violation.proto.rule_id.rsplit(".", 1)[-1]
