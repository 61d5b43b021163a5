"""Order events: the envelope ``new_event`` builds, its wire round trip, and the fold."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from brokermesh.common.v1.common_pb2 import DecisionResult, PolicyDecision
from brokermesh.domain import events, states
from brokermesh.events.v1.order_events_pb2 import OrderEvent

from .support import ACCEPTED_AT, FILLED_PATH, SYSTEM, lifecycle, new_order


@pytest.mark.parametrize(
    ("state", "event_type", "detail"),
    [
        (states.NEW, "OrderAccepted", "accepted"),
        (states.VALIDATED, "OrderValidated", "validated"),
        (states.RISK_APPROVED, "OrderRiskApproved", "risk_approved"),
        (states.BLOCKED, "OrderBlocked", "blocked"),
        (states.ROUTED, "OrderRouted", "routed"),
        (states.PARTIALLY_FILLED, "OrderPartiallyFilled", "filled"),
        (states.FILLED, "OrderFilled", "filled"),
        (states.REJECTED, "OrderRejected", "rejected"),
        (states.CANCELLED, "OrderCancelled", "cancelled"),
    ],
)
def test_each_target_state_has_its_past_tense_event_and_detail(
    state: int, event_type: str, detail: str
) -> None:
    event = events.new_event(new_order(), state, version=1, actor=SYSTEM)

    assert (event.event_type, events.detail_field(state)) == (event_type, detail)
    assert detail in {field.name for field in OrderEvent.DESCRIPTOR.oneofs_by_name["detail"].fields}


def test_new_event_copies_the_orders_envelope_fields() -> None:
    order = new_order()
    decision = PolicyDecision(policy="buying_power", result=DecisionResult.DECISION_RESULT_PASS)

    event = events.new_event(
        order, states.RISK_APPROVED, version=3, actor=SYSTEM, decisions=[decision], at=ACCEPTED_AT
    )

    assert (event.order_id, event.account_id, event.trace_id) == (
        order.order_id,
        order.account_id,
        order.trace_id,
    )
    assert (event.symbol, event.side, event.quantity) == (order.symbol, order.side, order.quantity)
    assert (event.order_type, event.limit_price) == (order.order_type, order.limit_price)
    assert (event.stream_version, event.state, event.event_version) == (
        3,
        states.RISK_APPROVED,
        "1.0",
    )
    assert list(event.policy_decisions) == [decision]
    assert event.actor == SYSTEM
    assert event.timestamp_utc.ToDatetime(tzinfo=ACCEPTED_AT.tzinfo) == ACCEPTED_AT


def test_every_event_gets_its_own_canonical_uuid() -> None:
    order = new_order()

    ids = [events.new_event(order, states.NEW, version=1, actor=SYSTEM).event_id for _ in range(3)]

    assert len(set(ids)) == 3
    assert all(str(uuid.UUID(event_id)) == event_id for event_id in ids)


def test_an_event_survives_its_deterministic_encoding_unchanged() -> None:
    event = lifecycle(new_order(), FILLED_PATH)[-1]

    payload = event.SerializeToString(deterministic=True)
    decoded = OrderEvent.FromString(payload)

    assert decoded == event
    assert decoded.SerializeToString(deterministic=True) == payload


def test_the_fold_of_a_filled_order_holds_its_fills_state_and_history() -> None:
    order = new_order()

    view = events.fold(lifecycle(order, FILLED_PATH))

    assert view.state == states.FILLED
    assert view.stream_version == len(FILLED_PATH)
    assert (view.order.order_id, view.order.client_order_id) == (
        order.order_id,
        order.client_order_id,
    )
    assert (view.cumulative_quantity, view.leaves_quantity) == (100, 0)
    assert [fill.price for fill in view.fills] == ["189.50", "189.40"]
    assert view.average_price == "189.450000"
    assert view.venue == "SIMX"
    assert [change.state for change in view.history] == list(FILLED_PATH)


def test_the_fold_keeps_the_reason_of_a_refusal_and_leaves_nothing_open() -> None:
    view = events.fold(lifecycle(new_order(), (states.NEW, states.VALIDATED, states.BLOCKED)))

    assert view.state == states.BLOCKED
    assert view.leaves_quantity == 0
    assert view.history[-1].reason == "max_notional"


def test_the_fold_refuses_a_stream_that_skips_a_state() -> None:
    order = new_order()
    skipping = lifecycle(order, (states.NEW, states.ROUTED))

    with pytest.raises(states.IllegalTransition, match=order.order_id):
        events.fold(skipping)


@pytest.mark.parametrize(
    ("fills", "expected"),
    [
        ([], Decimal(0)),
        ([(50, Decimal("189.50")), (50, Decimal("189.40"))], Decimal("189.450000")),
        ([(1, Decimal("10")), (2, Decimal("11"))], Decimal("10.666667")),
    ],
)
def test_average_price_is_volume_weighted_to_six_places(
    fills: list[tuple[int, Decimal]], expected: Decimal
) -> None:
    average = events.average_price(fills)

    assert average == expected
    assert average.as_tuple().exponent in (0, -6)
