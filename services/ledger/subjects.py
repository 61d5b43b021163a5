"""NATS subjects and headers of published order events: pure codecs, no I/O.

Every stored event is published once on ``trading.orders.<event>``, where
``<event>`` is its type without the ``Order`` prefix in snake case
(``OrderPartiallyFilled`` -> ``trading.orders.partially_filled``). Events that
carry a pre-trade risk verdict are published a second time on
``risk.decisions.pass`` or ``risk.decisions.fail``. JetStream de-duplicates on
``Nats-Msg-Id``: the event id for the order copy, ``<event id>:risk`` for the
risk copy, so a relay that publishes an event twice stores it once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from brokermesh.events.v1.order_events_pb2 import OrderEvent

#: JetStream stream every subject below belongs to.
STREAM = "ORDERS"
ORDERS_PREFIX = "trading.orders"
RISK_PREFIX = "risk.decisions"

#: Header JetStream de-duplicates on.
MSG_ID = "Nats-Msg-Id"
#: W3C trace context of the publication.
TRACEPARENT = "traceparent"
EVENT_TYPE = "Brokermesh-Event-Type"
ORDER_ID = "Brokermesh-Order-Id"
#: Position of the event in its order's stream, so a consumer can spot a gap or a repeat.
STREAM_VERSION = "Brokermesh-Stream-Version"

#: Suffix of the risk copy's message id, so the two copies do not de-duplicate each other.
RISK_MSG_ID_SUFFIX = ":risk"

#: Risk verdict each risk-deciding event type stands for.
RISK_RESULTS: dict[str, str] = {"OrderRiskApproved": "pass", "OrderBlocked": "fail"}

_EVENT_TYPE = re.compile(r"^Order(?:[A-Z][a-z0-9]*)+$")
_TOKEN = re.compile(r"^[a-z0-9]+(?:_[a-z0-9]+)*$")
_WORD_START = re.compile(r"(?<!^)(?=[A-Z])")
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-(?P<trace>[0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")


@dataclass(frozen=True, slots=True)
class Publication:
    """One message to publish: where, with which headers, and the serialized event."""

    subject: str
    payload: bytes
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def msg_id(self) -> str:
        return self.headers[MSG_ID]


def event_subject(event_type: str) -> str:
    """``trading.orders.<event>`` for an event type such as ``OrderRiskApproved``.

    Raises ValueError for a name that is not ``Order`` followed by CamelCase words,
    since anything else would make a subject no consumer filters for.
    """
    if not _EVENT_TYPE.match(event_type):
        raise ValueError(f"event type {event_type!r} is not Order<CamelCase>")
    token = _WORD_START.sub("_", event_type.removeprefix("Order")).lower()
    return f"{ORDERS_PREFIX}.{token}"


def event_type_of(subject: str) -> str:
    """The event type a ``trading.orders.<event>`` subject carries; the inverse of
    :func:`event_subject`."""
    prefix, dot, token = subject.rpartition(".")
    if prefix != ORDERS_PREFIX or not dot or not _TOKEN.match(token):
        raise ValueError(f"subject {subject!r} is not {ORDERS_PREFIX}.<event>")
    return "Order" + "".join(word.capitalize() for word in token.split("_"))


def risk_subject(event_type: str) -> str | None:
    """``risk.decisions.<result>`` for an event carrying a risk verdict, None otherwise."""
    result = RISK_RESULTS.get(event_type)
    return None if result is None else f"{RISK_PREFIX}.{result}"


def risk_msg_id(event_id: str) -> str:
    """Message id of an event's copy on ``risk.decisions``."""
    return f"{event_id}{RISK_MSG_ID_SUFFIX}"


def event_headers(event: OrderEvent) -> dict[str, str]:
    """Headers of an event's order copy, trace context aside."""
    return {
        MSG_ID: event.event_id,
        EVENT_TYPE: event.event_type,
        ORDER_ID: event.order_id,
        STREAM_VERSION: str(event.stream_version),
    }


def publications(
    event: OrderEvent, payload: bytes, trace_headers: Mapping[str, str] | None = None
) -> tuple[Publication, ...]:
    """Every message ``event`` is published as, order copy first.

    ``payload`` is the event exactly as the store holds it, so a consumer
    receives the bytes the hash chain covers; ``trace_headers`` (``traceparent``)
    are added to each copy.
    """
    headers = {**event_headers(event), **(trace_headers or {})}
    copies = [Publication(event_subject(event.event_type), payload, headers)]

    risk = risk_subject(event.event_type)
    if risk is not None:
        copies.append(Publication(risk, payload, {**headers, MSG_ID: risk_msg_id(event.event_id)}))
    return tuple(copies)


def parse_trace_id(trace_id: str) -> int | None:
    """An event's trace id as the 128-bit integer OpenTelemetry uses, or None when unusable.

    Accepts 32 hex digits, with or without UUID dashes; all-zero ids are invalid
    in W3C trace context and give None too.
    """
    digits = trace_id.replace("-", "").lower()
    if len(digits) != 32:
        return None
    try:
        value = int(digits, 16)
    except ValueError:
        return None
    return value or None


def traceparent_trace_id(traceparent: str) -> str:
    """The 32-hex-digit trace id of a W3C ``traceparent`` header, or "" when malformed."""
    match = _TRACEPARENT.match(traceparent.strip().lower())
    return match["trace"] if match else ""
