"""Fixtures for the mesh tests: a recording tracer provider, installed once."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider


@pytest.fixture(scope="session")
def tracing() -> None:
    """An SDK tracer provider, so spans carry real trace ids (the global can be set once)."""
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        trace.set_tracer_provider(TracerProvider())
