"""Pure tests of the FIX 4.4 NewOrderSingle, OrderStatusRequest and ExecutionReport codecs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
import quickfix

from brokermesh.mesh.fix.messages import (
    ORD_REJ_REASON_UNKNOWN_ORDER,
    ExecType,
    Execution,
    FixMessageError,
    NewOrder,
    OrderStatusQuery,
    OrderType,
    OrdStatus,
    Side,
    Tag,
    TimeInForce,
    execution_report,
    format_timestamp,
    new_order_single,
    order_reject,
    order_status_request,
    parse_execution_report,
    parse_new_order_single,
    parse_order_status_request,
    parse_timestamp,
)

WHEN = datetime(2024, 5, 1, 13, 30, 5, 123000, tzinfo=UTC)


def blueprint_order(**changes: object) -> NewOrder:
    fields: dict[str, object] = {
        "cl_ord_id": "ORD-1",
        "account": "ACC-42",
        "symbol": "AAPL",
        "side": Side.BUY,
        "quantity": 100,
        "order_type": OrderType.LIMIT,
        "limit_price": Decimal("189.50"),
        "time_in_force": TimeInForce.DAY,
        "transact_time": WHEN,
    }
    fields.update(changes)
    return NewOrder(**fields)  # type: ignore[arg-type]


def an_execution(**changes: object) -> Execution:
    fields: dict[str, object] = {
        "cl_ord_id": "ORD-1",
        "venue_order_id": "XNAS-O1",
        "exec_id": "XNAS-E2",
        "exec_type": ExecType.PARTIAL_FILL,
        "order_status": OrdStatus.PARTIALLY_FILLED,
        "symbol": "AAPL",
        "side": Side.BUY,
        "last_qty": 300,
        "last_price": Decimal("189.49"),
        "cum_qty": 600,
        "leaves_qty": 4400,
        "avg_price": Decimal("189.495"),
        "text": "",
        "transact_time": WHEN,
    }
    fields.update(changes)
    return Execution(**fields)  # type: ignore[arg-type]


def test_a_limit_order_survives_a_round_trip_through_the_wire_format() -> None:
    order = blueprint_order()
    assert parse_new_order_single(new_order_single(order)) == order


def test_a_market_order_survives_a_round_trip_without_a_price() -> None:
    order = blueprint_order(order_type=OrderType.MARKET, limit_price=None, side=Side.SELL)
    message = new_order_single(order)
    assert not message.isSetField(int(Tag.PRICE))
    assert parse_new_order_single(message) == order


def test_prices_go_on_the_wire_exactly_as_their_decimals_read() -> None:
    message = new_order_single(blueprint_order(limit_price=Decimal("0.10") + Decimal("0.20")))
    assert message.getField(int(Tag.PRICE)) == "0.30"
    assert message.getField(int(Tag.ORDER_QTY)) == "100"
    assert message.getField(int(Tag.TRANSACT_TIME)) == "20240501-13:30:05.123"


@pytest.mark.parametrize(
    ("exec_type", "order_status", "wire_exec_type"),
    [
        (ExecType.NEW, OrdStatus.NEW, "0"),
        (ExecType.PARTIAL_FILL, OrdStatus.PARTIALLY_FILLED, "F"),
        (ExecType.FILL, OrdStatus.FILLED, "F"),
        (ExecType.CANCELED, OrdStatus.CANCELED, "4"),
        (ExecType.REJECTED, OrdStatus.REJECTED, "8"),
        (ExecType.ORDER_STATUS, OrdStatus.PARTIALLY_FILLED, "I"),
    ],
)
def test_every_kind_of_execution_survives_a_round_trip(
    exec_type: ExecType, order_status: OrdStatus, wire_exec_type: str
) -> None:
    execution = an_execution(exec_type=exec_type, order_status=order_status, text="why")
    message = execution_report(execution)
    assert message.getField(int(Tag.EXEC_TYPE)) == wire_exec_type
    assert message.getField(int(Tag.ORD_STATUS)) == order_status.value
    assert parse_execution_report(message) == execution


def test_a_trade_is_a_partial_or_a_full_fill_according_to_its_order_status() -> None:
    full = an_execution(exec_type=ExecType.FILL, order_status=OrdStatus.FILLED, leaves_qty=0)
    message = execution_report(full)
    message.setField(int(Tag.ORD_STATUS), OrdStatus.PARTIALLY_FILLED.value)
    assert parse_execution_report(message).exec_type is ExecType.PARTIAL_FILL


def test_a_fill_cannot_be_built_with_an_order_status_that_contradicts_it() -> None:
    with pytest.raises(FixMessageError) as error:
        execution_report(an_execution(exec_type=ExecType.FILL))
    assert error.value.tag_name == "OrdStatus"


@pytest.mark.parametrize(
    "tag",
    [
        Tag.CL_ORD_ID,
        Tag.ACCOUNT,
        Tag.SYMBOL,
        Tag.SIDE,
        Tag.ORDER_QTY,
        Tag.ORD_TYPE,
        Tag.PRICE,
        Tag.TRANSACT_TIME,
    ],
)
def test_a_missing_order_field_is_reported_by_its_tag_name(tag: Tag) -> None:
    message = new_order_single(blueprint_order())
    message.removeField(int(tag))
    with pytest.raises(FixMessageError) as error:
        parse_new_order_single(message)
    assert error.value.tag is tag
    assert f"{tag.fix_name}({tag.value})" in str(error.value)


@pytest.mark.parametrize(
    ("tag", "raw"),
    [
        (Tag.ORDER_QTY, "0"),
        (Tag.ORDER_QTY, "-5"),
        (Tag.ORDER_QTY, "100.5"),
        (Tag.SIDE, "5"),
        (Tag.PRICE, "abc"),
        (Tag.PRICE, "0"),
        (Tag.TIME_IN_FORCE, "6"),
        (Tag.TRANSACT_TIME, "2024-05-01 13:30"),
    ],
)
def test_an_invalid_order_field_is_reported_by_its_tag_name(tag: Tag, raw: str) -> None:
    message = new_order_single(blueprint_order())
    message.setField(int(tag), raw)
    with pytest.raises(FixMessageError) as error:
        parse_new_order_single(message)
    assert error.value.tag_name == tag.fix_name
    assert repr(raw) in str(error.value)


@pytest.mark.parametrize("tag", [Tag.ORDER_ID, Tag.EXEC_ID, Tag.CUM_QTY, Tag.LAST_PX])
def test_a_missing_execution_field_is_reported_by_its_tag_name(tag: Tag) -> None:
    message = execution_report(an_execution())
    message.removeField(int(tag))
    with pytest.raises(FixMessageError) as error:
        parse_execution_report(message)
    assert error.value.tag is tag


def test_a_report_without_a_trade_may_omit_last_quantity_and_price() -> None:
    message = execution_report(an_execution(exec_type=ExecType.NEW, order_status=OrdStatus.NEW))
    message.removeField(int(Tag.LAST_QTY))
    message.removeField(int(Tag.LAST_PX))
    parsed = parse_execution_report(message)
    assert (parsed.last_qty, parsed.last_price) == (0, Decimal(0))


def test_an_order_parser_refuses_an_execution_report() -> None:
    with pytest.raises(FixMessageError) as error:
        parse_new_order_single(execution_report(an_execution()))
    assert error.value.tag is Tag.MSG_TYPE


def test_a_malformed_order_is_rejected_with_its_identifiers_echoed() -> None:
    order = new_order_single(blueprint_order())
    order.setField(int(Tag.ORDER_QTY), "0")
    reject = order_reject(
        order, venue_order_id="NONE", exec_id="R1", text="bad OrderQty(38)", transact_time=WHEN
    )
    parsed = parse_execution_report(reject)
    assert parsed.exec_type is ExecType.REJECTED
    assert parsed.order_status is OrdStatus.REJECTED
    assert (parsed.cl_ord_id, parsed.symbol, parsed.side) == ("ORD-1", "AAPL", Side.BUY)
    assert parsed.text == "bad OrderQty(38)"


def test_timestamps_are_sent_in_utc_with_milliseconds() -> None:
    new_york = timezone(timedelta(hours=-4))
    local = datetime(2024, 5, 1, 9, 30, 5, 123456, tzinfo=new_york)
    assert format_timestamp(local) == "20240501-13:30:05.123"


def test_a_naive_timestamp_cannot_be_sent() -> None:
    with pytest.raises(FixMessageError):
        format_timestamp(datetime(2024, 5, 1, 13, 30))


@pytest.mark.parametrize(
    ("raw", "microsecond"),
    [
        ("20240501-13:30:05", 0),
        ("20240501-13:30:05.123", 123000),
        ("20240501-13:30:05.123456", 123456),
        ("20240501-13:30:05.123456789", 123456),
    ],
)
def test_timestamps_are_read_at_any_fix_precision(raw: str, microsecond: int) -> None:
    assert parse_timestamp(raw) == datetime(2024, 5, 1, 13, 30, 5, microsecond, tzinfo=UTC)


def test_a_float_price_is_refused() -> None:
    with pytest.raises(FixMessageError):
        new_order_single(blueprint_order(limit_price=189.5))


def test_a_message_from_the_wire_parses_like_a_built_one() -> None:
    raw = new_order_single(blueprint_order()).toString()
    assert parse_new_order_single(quickfix.Message(raw)) == blueprint_order()


def test_an_order_status_request_survives_a_round_trip_through_the_wire_format() -> None:
    query = OrderStatusQuery(cl_ord_id="ORD-20260316-00000001", symbol="AAPL", side=Side.SELL)

    message = order_status_request(query)

    assert message.getHeader().getField(int(Tag.MSG_TYPE)) == "H"
    assert parse_order_status_request(quickfix.Message(message.toString(), False)) == query


def test_an_order_status_request_without_a_side_is_reported_by_its_tag_name() -> None:
    message = order_status_request(
        OrderStatusQuery(cl_ord_id="ORD-1", symbol="AAPL", side=Side.BUY)
    )
    message.removeField(int(Tag.SIDE))

    with pytest.raises(FixMessageError) as error:
        parse_order_status_request(message)

    assert error.value.tag_name == "Side"


def test_an_unknown_order_status_carries_its_reject_reason_over_the_wire() -> None:
    unknown = an_execution(
        exec_type=ExecType.ORDER_STATUS,
        order_status=OrdStatus.REJECTED,
        last_qty=0,
        last_price=Decimal(0),
        cum_qty=0,
        leaves_qty=0,
        avg_price=Decimal(0),
        text="unknown order ORD-1",
        ord_rej_reason=ORD_REJ_REASON_UNKNOWN_ORDER,
    )

    message = execution_report(unknown)

    assert message.getField(int(Tag.ORD_REJ_REASON)) == "5"
    assert parse_execution_report(message) == unknown


def test_a_non_numeric_reject_reason_is_reported_by_its_tag_name() -> None:
    message = execution_report(
        an_execution(exec_type=ExecType.REJECTED, order_status=OrdStatus.REJECTED)
    )
    message.setField(int(Tag.ORD_REJ_REASON), "X")

    with pytest.raises(FixMessageError) as error:
        parse_execution_report(message)

    assert error.value.tag_name == "OrdRejReason"
