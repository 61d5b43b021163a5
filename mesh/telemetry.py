"""Tracing and metrics set-up: OpenTelemetry spans and Prometheus instruments.

Spans go to an OTLP collector when ``otlp_endpoint`` is set; otherwise each
service appends them as JSON lines to ``<data_dir>/traces/<service>.jsonl`` so
that ``brokermesh trace ORDER_ID`` can show one order's path offline.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import orjson
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from prometheus_client import Counter, Histogram

#: Buckets for a hot path measured in milliseconds (in seconds, as Prometheus expects),
#: with a boundary at every threshold of the blueprint's latency table.
LATENCY_BUCKETS_S = (
    0.0005,
    0.001,
    0.002,
    0.003,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.02,
    0.025,
    0.035,
    0.045,
    0.05,
    0.06,
    0.075,
    0.1,
    0.14,
    0.25,
    0.5,
    1.0,
    2.5,
)

GRPC_HANDLED = Counter(
    "brokermesh_grpc_server_handled",
    "gRPC calls completed, by method and status code.",
    ["service", "method", "code"],
)
GRPC_SECONDS = Histogram(
    "brokermesh_grpc_server_handling_seconds",
    "Time to handle a gRPC call.",
    ["service", "method"],
    buckets=LATENCY_BUCKETS_S,
)

#: The blueprint's pre-venue latency budget, segment by segment: gateway_auth,
#: oms_validation, pre_trade_risk, routing, and total (gateway receipt to the
#: NewOrderSingle handed to the FIX engine).
PREVENUE_SEGMENT_SECONDS = Histogram(
    "brokermesh_prevenue_segment_seconds",
    "Time spent in each segment of the pre-venue path.",
    ["segment"],
    buckets=LATENCY_BUCKETS_S,
)


class JsonLinesSpanExporter(SpanExporter):
    """Appends finished spans to a local file, one JSON object per line."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("ab")
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = b"".join(orjson.dumps(_span_record(span)) + b"\n" for span in spans)
        with self._lock:
            self._file.write(lines)
            self._file.flush()
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        with self._lock:
            self._file.close()


def configure_tracing(service: str, *, data_dir: Path, otlp_endpoint: str = "") -> TracerProvider:
    """Install the global tracer provider for ``service``; returns it for shutdown."""
    exporter: SpanExporter
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=otlp_endpoint, insecure=True)
    else:
        exporter = JsonLinesSpanExporter(data_dir / "traces" / f"{service}.jsonl")

    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=500))
    trace.set_tracer_provider(provider)
    return provider


def current_trace_id() -> str:
    """Hex id of the active trace, or an empty string outside one."""
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else ""


def _span_record(span: ReadableSpan) -> dict[str, object]:
    context = span.get_span_context()
    parent = span.parent
    return {
        "trace_id": format(context.trace_id, "032x") if context else "",
        "span_id": format(context.span_id, "016x") if context else "",
        "parent_id": format(parent.span_id, "016x") if parent else "",
        "name": span.name,
        "service": span.resource.attributes.get("service.name", ""),
        "start_ns": span.start_time,
        "end_ns": span.end_time,
        "status": span.status.status_code.name,
        "attributes": dict(span.attributes or {}),
    }
