"""The NATS subject and header codecs of published order events."""

from __future__ import annotations

import pytest

from brokermesh.domain import states
from brokermesh.domain.events import EVENT_TYPES
from brokermesh.events.v1.order_events_pb2 import OrderEvent
from brokermesh.services.ledger import subjects

EXPECTED_SUBJECTS = {
    "OrderAccepted": "trading.orders.accepted",
    "OrderValidated": "trading.orders.validated",
    "OrderRiskApproved": "trading.orders.risk_approved",
    "OrderBlocked": "trading.orders.blocked",
    "OrderRouted": "trading.orders.routed",
    "OrderPartiallyFilled": "trading.orders.partially_filled",
    "OrderFilled": "trading.orders.filled",
    "OrderRejected": "trading.orders.rejected",
    "OrderCancelled": "trading.orders.cancelled",
}


def _event(event_type: str) -> OrderEvent:
    return OrderEvent(
        event_type=event_type,
        event_id="6f1c4c1e-5d0a-4a55-9d3e-0c2b7b1f7a10",
        order_id="ORD-20260316-00001234",
        stream_version=3,
        state=states.RISK_APPROVED,
    )


@pytest.mark.parametrize(("event_type", "subject"), sorted(EXPECTED_SUBJECTS.items()))
def test_event_subject_is_snake_case_without_the_order_prefix(
    event_type: str, subject: str
) -> None:
    assert subjects.event_subject(event_type) == subject


@pytest.mark.parametrize("event_type", sorted(EXPECTED_SUBJECTS))
def test_event_type_of_inverts_event_subject(event_type: str) -> None:
    assert subjects.event_type_of(subjects.event_subject(event_type)) == event_type


def test_every_event_type_the_domain_writes_has_a_subject() -> None:
    written = {event_type for event_type, _ in EVENT_TYPES.values()}

    assert written == set(EXPECTED_SUBJECTS)


@pytest.mark.parametrize(
    "event_type",
    ["", "Order", "Accepted", "orderAccepted", "Order.Accepted", "OrderAccepted>", "Order Filled"],
)
def test_event_subject_refuses_a_name_that_is_not_order_camel_case(event_type: str) -> None:
    with pytest.raises(ValueError, match="Order<CamelCase>"):
        subjects.event_subject(event_type)


@pytest.mark.parametrize(
    "subject",
    [
        "trading.orders",
        "risk.decisions.pass",
        "trading.orders.Filled",
        "trading.orders.a.b",
        "trading.orders._x",
    ],
)
def test_event_type_of_refuses_other_subjects(subject: str) -> None:
    with pytest.raises(ValueError):
        subjects.event_type_of(subject)


def test_risk_decisions_go_to_pass_and_fail_subjects() -> None:
    assert subjects.risk_subject("OrderRiskApproved") == "risk.decisions.pass"
    assert subjects.risk_subject("OrderBlocked") == "risk.decisions.fail"
    assert subjects.risk_subject("OrderFilled") is None


def test_an_ordinary_event_is_one_publication_with_its_event_id_as_msg_id() -> None:
    event = _event("OrderRouted")

    (only,) = subjects.publications(event, b"payload", {"traceparent": "00-x-y-01"})

    assert only.subject == "trading.orders.routed"
    assert only.payload == b"payload"
    assert dict(only.headers) == {
        "Nats-Msg-Id": event.event_id,
        "Brokermesh-Event-Type": "OrderRouted",
        "Brokermesh-Order-Id": "ORD-20260316-00001234",
        "Brokermesh-Stream-Version": "3",
        "traceparent": "00-x-y-01",
    }


def test_a_risk_decision_is_also_published_on_risk_decisions_with_its_own_msg_id() -> None:
    event = _event("OrderRiskApproved")

    order_copy, risk_copy = subjects.publications(event, b"payload")

    assert order_copy.subject == "trading.orders.risk_approved"
    assert order_copy.msg_id == event.event_id
    assert risk_copy.subject == "risk.decisions.pass"
    assert risk_copy.msg_id == f"{event.event_id}:risk"
    assert risk_copy.payload == order_copy.payload
    assert risk_copy.headers[subjects.ORDER_ID] == event.order_id


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4bf92f3577b34da6a3ce929d0e0e4736", 0x4BF92F3577B34DA6A3CE929D0E0E4736),
        ("4BF92F35-77B3-4DA6-A3CE-929D0E0E4736", 0x4BF92F3577B34DA6A3CE929D0E0E4736),
        ("", None),
        ("trace-uuid", None),
        ("0" * 32, None),
        ("z" * 32, None),
        ("4bf92f3577b34da6a3ce929d0e0e47", None),
    ],
)
def test_parse_trace_id_accepts_hex_and_uuid_forms_only(text: str, expected: int | None) -> None:
    assert subjects.parse_trace_id(text) == expected


def test_traceparent_trace_id_reads_the_w3c_header() -> None:
    header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

    assert subjects.traceparent_trace_id(header) == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert subjects.traceparent_trace_id("garbage") == ""
