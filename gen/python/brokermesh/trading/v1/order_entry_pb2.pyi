import datetime

from brokermesh.common.v1 import common_pb2 as _common_pb2
from brokermesh.common.v1 import options_pb2 as _options_pb2
from brokermesh.trading.v1 import order_pb2 as _order_pb2
from brokermesh._buf.validate import validate_pb2 as _validate_pb2
from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SubmitOrderRequest(_message.Message):
    __slots__ = ("account_id", "symbol", "side", "quantity", "order_type", "limit_price", "time_in_force", "advisor_id", "client_order_id")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    SIDE_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    ORDER_TYPE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_PRICE_FIELD_NUMBER: _ClassVar[int]
    TIME_IN_FORCE_FIELD_NUMBER: _ClassVar[int]
    ADVISOR_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    symbol: str
    side: _common_pb2.Side
    quantity: int
    order_type: _common_pb2.OrderType
    limit_price: str
    time_in_force: _common_pb2.TimeInForce
    advisor_id: str
    client_order_id: str
    def __init__(self, account_id: _Optional[str] = ..., symbol: _Optional[str] = ..., side: _Optional[_Union[_common_pb2.Side, str]] = ..., quantity: _Optional[int] = ..., order_type: _Optional[_Union[_common_pb2.OrderType, str]] = ..., limit_price: _Optional[str] = ..., time_in_force: _Optional[_Union[_common_pb2.TimeInForce, str]] = ..., advisor_id: _Optional[str] = ..., client_order_id: _Optional[str] = ...) -> None: ...

class SubmitOrderResponse(_message.Message):
    __slots__ = ("order_id", "status", "accepted_at", "trace_id", "risk_decisions", "duplicate")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_AT_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    RISK_DECISIONS_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    status: _order_pb2.OrderState
    accepted_at: _timestamp_pb2.Timestamp
    trace_id: str
    risk_decisions: _containers.RepeatedCompositeFieldContainer[_common_pb2.PolicyDecision]
    duplicate: bool
    def __init__(self, order_id: _Optional[str] = ..., status: _Optional[_Union[_order_pb2.OrderState, str]] = ..., accepted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., trace_id: _Optional[str] = ..., risk_decisions: _Optional[_Iterable[_Union[_common_pb2.PolicyDecision, _Mapping]]] = ..., duplicate: _Optional[bool] = ...) -> None: ...
