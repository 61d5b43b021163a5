"""JSON ⇄ Protobuf mapping: the blueprint's request, exact decimals, enums and refusals."""

from __future__ import annotations

import json
from typing import Any

import pytest
from google.protobuf import timestamp_pb2

from brokermesh.common.v1 import common_pb2
from brokermesh.services.gateway import jsonmap
from brokermesh.trading.v1 import order_entry_pb2, order_pb2, order_query_pb2

BLUEPRINT_BODY = b"""{
  "account_id": "ACC-987654",
  "symbol": "AAPL",
  "side": "BUY",
  "quantity": 100,
  "order_type": "LIMIT",
  "limit_price": 189.50,
  "time_in_force": "DAY",
  "advisor_id": "ADV-1207",
  "client_order_id": "CO-332819"
}"""


def _submit(body: bytes) -> order_entry_pb2.SubmitOrderRequest:
    message = order_entry_pb2.SubmitOrderRequest()
    jsonmap.message_from_json(jsonmap.parse_json(body), message)
    return message


def _with(**changes: Any) -> bytes:
    body = json.loads(BLUEPRINT_BODY)
    body.update(changes)
    return json.dumps(body).encode()


def test_blueprint_request_maps_field_for_field() -> None:
    message = _submit(BLUEPRINT_BODY)

    assert message == order_entry_pb2.SubmitOrderRequest(
        account_id="ACC-987654",
        symbol="AAPL",
        side=common_pb2.SIDE_BUY,
        quantity=100,
        order_type=common_pb2.ORDER_TYPE_LIMIT,
        limit_price="189.50",
        time_in_force=common_pb2.TIME_IN_FORCE_DAY,
        advisor_id="ADV-1207",
        client_order_id="CO-332819",
    )


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("189.50", "189.50"),
        ("0.1", "0.1"),
        ("100", "100"),
        ("1e2", "100"),
        ("123456789.123456", "123456789.123456"),
    ],
)
def test_decimal_numbers_are_read_exactly(written: str, expected: str) -> None:
    body = BLUEPRINT_BODY.replace(b"189.50", written.encode())

    assert _submit(body).limit_price == expected


def test_decimal_field_also_takes_a_string() -> None:
    assert _submit(_with(limit_price="189.50")).limit_price == "189.50"


def test_fractional_quantity_is_refused_naming_quantity() -> None:
    with pytest.raises(jsonmap.MappingError) as caught:
        _submit(BLUEPRINT_BODY.replace(b'"quantity": 100', b'"quantity": 100.5'))

    assert caught.value.field == "quantity"


@pytest.mark.parametrize("value", ["100", True, {"shares": 100}, [100]])
def test_quantity_of_the_wrong_type_is_refused(value: Any) -> None:
    with pytest.raises(jsonmap.MappingError) as caught:
        _submit(_with(quantity=value))

    assert caught.value.field == "quantity"


def test_null_leaves_a_field_unset() -> None:
    assert _submit(_with(limit_price=None)).limit_price == ""


def test_unknown_field_is_refused_by_name() -> None:
    with pytest.raises(jsonmap.MappingError) as caught:
        _submit(_with(stop_price=180))

    assert caught.value.field == "stop_price"


def test_symbol_of_the_wrong_type_is_refused_by_name() -> None:
    with pytest.raises(jsonmap.MappingError) as caught:
        _submit(_with(symbol=42))

    assert caught.value.field == "symbol"


def test_unknown_enum_name_is_refused_by_name() -> None:
    with pytest.raises(jsonmap.MappingError) as caught:
        _submit(_with(side="HOLD"))

    assert caught.value.field == "side"
    assert "BUY" in caught.value.message


def test_full_enum_name_is_accepted_too() -> None:
    assert _submit(_with(side="SIDE_SELL")).side == common_pb2.SIDE_SELL


def test_int32_out_of_range_is_refused() -> None:
    message = order_query_pb2.ListOrdersRequest()
    with pytest.raises(jsonmap.MappingError) as caught:
        jsonmap.message_from_json({"page_size": 2**31}, message)

    assert caught.value.field == "page_size"


@pytest.mark.parametrize("body", [b"{", b"", b"[1,", b'{"quantity": NaN}', b"\xff"])
def test_malformed_json_is_refused(body: bytes) -> None:
    with pytest.raises(jsonmap.MappingError) as caught:
        jsonmap.parse_json(body)

    assert caught.value.field == ""


def test_body_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(jsonmap.MappingError):
        _submit(b"[1, 2]")


def test_nested_error_names_the_dotted_path() -> None:
    message = order_query_pb2.OrderView()
    with pytest.raises(jsonmap.MappingError) as caught:
        jsonmap.message_from_json({"order": {"quantity": 1.5}}, message)

    assert caught.value.field == "order.quantity"


def test_enum_short_names_strip_the_type_prefix() -> None:
    assert jsonmap.enum_short_names(common_pb2.Side.DESCRIPTOR) == ["UNSPECIFIED", "BUY", "SELL"]
    assert jsonmap.enum_prefix(order_pb2.OrderState.DESCRIPTOR) == "ORDER_STATE_"
    assert jsonmap.enum_prefix(common_pb2.TimeInForce.DESCRIPTOR) == "TIME_IN_FORCE_"


def test_submit_response_is_written_with_the_api_conventions() -> None:
    accepted = timestamp_pb2.Timestamp(seconds=1_773_687_862, nanos=341_999_999)
    response = order_entry_pb2.SubmitOrderResponse(
        order_id="ORD-20260316-00001234",
        status=order_pb2.ORDER_STATE_NEW,
        accepted_at=accepted,
        trace_id="abc",
        risk_decisions=[
            common_pb2.PolicyDecision(
                policy="buying_power", result=common_pb2.DECISION_RESULT_PASS, reason="ok"
            )
        ],
    )

    assert jsonmap.message_to_json(response) == {
        "order_id": "ORD-20260316-00001234",
        "status": "NEW",
        "accepted_at": "2026-03-16T19:04:22.341Z",
        "trace_id": "abc",
        "risk_decisions": [{"policy": "buying_power", "result": "PASS", "reason": "ok"}],
        "duplicate": False,
    }


def test_order_view_keeps_decimals_as_strings_and_int64_as_numbers() -> None:
    view = order_query_pb2.OrderView(
        order=order_pb2.Order(
            order_id="ORD-20260316-00000001", quantity=2**40, limit_price="189.50"
        ),
        state=order_pb2.ORDER_STATE_FILLED,
        cumulative_quantity=100,
        average_price="189.4975",
        fills=[order_pb2.Fill(exec_id="E1", quantity=100, price="189.4975")],
    )

    written = jsonmap.message_to_json(view)

    assert written["state"] == "FILLED"
    assert written["order"]["quantity"] == 2**40
    assert written["order"]["limit_price"] == "189.50"
    assert written["order"]["side"] == "UNSPECIFIED"
    assert written["order"]["accepted_at"] is None
    assert written["average_price"] == "189.4975"
    assert written["fills"][0]["price"] == "189.4975"
    assert json.loads(json.dumps(written)) == written


def test_enums_round_trip_through_json() -> None:
    original = _submit(BLUEPRINT_BODY)

    again = order_entry_pb2.SubmitOrderRequest()
    jsonmap.message_from_json(jsonmap.message_to_json(original), again)

    assert again == original
    assert jsonmap.message_to_json(again)["time_in_force"] == "DAY"


def test_url_parameters_are_typed_by_their_fields() -> None:
    message = order_query_pb2.ListOrdersRequest()

    jsonmap.message_from_params([("account_id", "ACC-987654"), ("page_size", "20")], message)

    assert message == order_query_pb2.ListOrdersRequest(account_id="ACC-987654", page_size=20)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ([("page_size", "ten")], "page_size"),
        ([("colour", "red")], "colour"),
        ([("page_size", "1"), ("page_size", "2")], "page_size"),
    ],
)
def test_bad_url_parameters_are_refused_by_name(params: list[tuple[str, str]], field: str) -> None:
    with pytest.raises(jsonmap.MappingError) as caught:
        jsonmap.message_from_params(params, order_query_pb2.ListOrdersRequest())

    assert caught.value.field == field
