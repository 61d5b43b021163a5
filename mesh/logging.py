"""Structured JSON logging with the request's trace, correlation and order ids attached."""

from __future__ import annotations

import contextvars
import logging
import sys
import time
import uuid
from typing import Any

import orjson

#: Ids of the request being served; set by the server pipeline and the gateway.
trace_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("trace_id", default="")
correlation_id_var: contextvars.ContextVar[str] = contextvars.ContextVar(
    "correlation_id", default=""
)
order_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("order_id", default="")

#: Longest correlation id adopted from a caller.
MAX_CORRELATION_ID_LENGTH = 128


def correlation_id(offered: str) -> str:
    """The caller's correlation id when it is a sane token, a fresh one otherwise.

    Sane means non-empty, ASCII, printable and at most
    :data:`MAX_CORRELATION_ID_LENGTH` characters: the id lands in every log
    line of the request and in the metadata of every downstream call.
    """
    if (
        offered
        and len(offered) <= MAX_CORRELATION_ID_LENGTH
        and offered.isascii()
        and offered.isprintable()
    ):
        return offered
    return str(uuid.uuid4())


#: Attributes of a LogRecord that are not user-supplied ``extra`` fields.
_RESERVED = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message"}

#: Keys that must never reach a log line, whatever a caller passes in ``extra``.
_REDACTED = frozenset({"authorization", "token", "password", "secret", "ssn", "tax_id"})


#: Fields a handler adds to its request's one log line (see :func:`annotate`); the server
#: pipeline gives every call a fresh dict.
request_fields_var: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "request_fields", default=None
)


def annotate(**fields: Any) -> None:
    """Add ``fields`` to the current request's log line (the one the pipeline writes when the
    call ends), rather than writing a second line for the same request. Outside a request it
    does nothing; a field named like a LogRecord attribute is refused (ValueError)."""
    clashing = _RESERVED.intersection(fields)
    if clashing:
        raise ValueError(f"log fields {sorted(clashing)} would overwrite LogRecord attributes")
    current = request_fields_var.get()
    if current is not None:
        current.update(fields)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, service, logger, message, ids and extras."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "service": self._service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, var in (
            ("trace_id", trace_id_var),
            ("correlation_id", correlation_id_var),
            ("order_id", order_id_var),
        ):
            value = var.get()
            if value:
                entry[key] = value
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = "[redacted]" if key.lower() in _REDACTED else value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure(service: str, level: str = "INFO") -> None:
    """Send every log record to stderr as JSON; idempotent."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Library chatter at INFO (connection lifecycle) drowns the request lines.
    for noisy in ("asyncio", "nats", "uvicorn.access", "grpc"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
