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

class GetOrderRequest(_message.Message):
    __slots__ = ("order_id",)
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    def __init__(self, order_id: _Optional[str] = ...) -> None: ...

class GetOrderResponse(_message.Message):
    __slots__ = ("order",)
    ORDER_FIELD_NUMBER: _ClassVar[int]
    order: OrderView
    def __init__(self, order: _Optional[_Union[OrderView, _Mapping]] = ...) -> None: ...

class ListOrdersRequest(_message.Message):
    __slots__ = ("account_id", "page_size")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    page_size: int
    def __init__(self, account_id: _Optional[str] = ..., page_size: _Optional[int] = ...) -> None: ...

class ListOrdersResponse(_message.Message):
    __slots__ = ("orders",)
    ORDERS_FIELD_NUMBER: _ClassVar[int]
    orders: _containers.RepeatedCompositeFieldContainer[OrderView]
    def __init__(self, orders: _Optional[_Iterable[_Union[OrderView, _Mapping]]] = ...) -> None: ...

class StateChange(_message.Message):
    __slots__ = ("state", "event_type", "at", "reason")
    STATE_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    state: _order_pb2.OrderState
    event_type: str
    at: _timestamp_pb2.Timestamp
    reason: str
    def __init__(self, state: _Optional[_Union[_order_pb2.OrderState, str]] = ..., event_type: _Optional[str] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...

class OrderView(_message.Message):
    __slots__ = ("order", "state", "cumulative_quantity", "leaves_quantity", "average_price", "fills", "history", "policy_decisions", "venue", "stream_version")
    ORDER_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CUMULATIVE_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    LEAVES_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    AVERAGE_PRICE_FIELD_NUMBER: _ClassVar[int]
    FILLS_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    POLICY_DECISIONS_FIELD_NUMBER: _ClassVar[int]
    VENUE_FIELD_NUMBER: _ClassVar[int]
    STREAM_VERSION_FIELD_NUMBER: _ClassVar[int]
    order: _order_pb2.Order
    state: _order_pb2.OrderState
    cumulative_quantity: int
    leaves_quantity: int
    average_price: str
    fills: _containers.RepeatedCompositeFieldContainer[_order_pb2.Fill]
    history: _containers.RepeatedCompositeFieldContainer[StateChange]
    policy_decisions: _containers.RepeatedCompositeFieldContainer[_common_pb2.PolicyDecision]
    venue: str
    stream_version: int
    def __init__(self, order: _Optional[_Union[_order_pb2.Order, _Mapping]] = ..., state: _Optional[_Union[_order_pb2.OrderState, str]] = ..., cumulative_quantity: _Optional[int] = ..., leaves_quantity: _Optional[int] = ..., average_price: _Optional[str] = ..., fills: _Optional[_Iterable[_Union[_order_pb2.Fill, _Mapping]]] = ..., history: _Optional[_Iterable[_Union[StateChange, _Mapping]]] = ..., policy_decisions: _Optional[_Iterable[_Union[_common_pb2.PolicyDecision, _Mapping]]] = ..., venue: _Optional[str] = ..., stream_version: _Optional[int] = ...) -> None: ...
