import datetime

from brokermesh.common.v1 import common_pb2 as _common_pb2
from brokermesh._buf.validate import validate_pb2 as _validate_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class OrderState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ORDER_STATE_UNSPECIFIED: _ClassVar[OrderState]
    ORDER_STATE_NEW: _ClassVar[OrderState]
    ORDER_STATE_VALIDATED: _ClassVar[OrderState]
    ORDER_STATE_RISK_APPROVED: _ClassVar[OrderState]
    ORDER_STATE_BLOCKED: _ClassVar[OrderState]
    ORDER_STATE_ROUTED: _ClassVar[OrderState]
    ORDER_STATE_PARTIALLY_FILLED: _ClassVar[OrderState]
    ORDER_STATE_FILLED: _ClassVar[OrderState]
    ORDER_STATE_REJECTED: _ClassVar[OrderState]
    ORDER_STATE_CANCELLED: _ClassVar[OrderState]
ORDER_STATE_UNSPECIFIED: OrderState
ORDER_STATE_NEW: OrderState
ORDER_STATE_VALIDATED: OrderState
ORDER_STATE_RISK_APPROVED: OrderState
ORDER_STATE_BLOCKED: OrderState
ORDER_STATE_ROUTED: OrderState
ORDER_STATE_PARTIALLY_FILLED: OrderState
ORDER_STATE_FILLED: OrderState
ORDER_STATE_REJECTED: OrderState
ORDER_STATE_CANCELLED: OrderState

class Order(_message.Message):
    __slots__ = ("order_id", "client_order_id", "account_id", "advisor_id", "symbol", "side", "quantity", "order_type", "limit_price", "time_in_force", "accepted_at", "trace_id")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    ADVISOR_ID_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    SIDE_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    ORDER_TYPE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_PRICE_FIELD_NUMBER: _ClassVar[int]
    TIME_IN_FORCE_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_AT_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    client_order_id: str
    account_id: str
    advisor_id: str
    symbol: str
    side: _common_pb2.Side
    quantity: int
    order_type: _common_pb2.OrderType
    limit_price: str
    time_in_force: _common_pb2.TimeInForce
    accepted_at: _timestamp_pb2.Timestamp
    trace_id: str
    def __init__(self, order_id: _Optional[str] = ..., client_order_id: _Optional[str] = ..., account_id: _Optional[str] = ..., advisor_id: _Optional[str] = ..., symbol: _Optional[str] = ..., side: _Optional[_Union[_common_pb2.Side, str]] = ..., quantity: _Optional[int] = ..., order_type: _Optional[_Union[_common_pb2.OrderType, str]] = ..., limit_price: _Optional[str] = ..., time_in_force: _Optional[_Union[_common_pb2.TimeInForce, str]] = ..., accepted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., trace_id: _Optional[str] = ...) -> None: ...

class Fill(_message.Message):
    __slots__ = ("exec_id", "venue", "quantity", "price", "executed_at")
    EXEC_ID_FIELD_NUMBER: _ClassVar[int]
    VENUE_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    EXECUTED_AT_FIELD_NUMBER: _ClassVar[int]
    exec_id: str
    venue: str
    quantity: int
    price: str
    executed_at: _timestamp_pb2.Timestamp
    def __init__(self, exec_id: _Optional[str] = ..., venue: _Optional[str] = ..., quantity: _Optional[int] = ..., price: _Optional[str] = ..., executed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
