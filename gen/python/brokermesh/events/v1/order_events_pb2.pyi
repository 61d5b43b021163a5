import datetime

from brokermesh.common.v1 import common_pb2 as _common_pb2
from brokermesh.trading.v1 import order_pb2 as _order_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class OrderEvent(_message.Message):
    __slots__ = ("event_type", "event_version", "event_id", "trace_id", "timestamp_utc", "order_id", "account_id", "symbol", "side", "quantity", "order_type", "limit_price", "policy_decisions", "actor", "stream_version", "state", "accepted", "validated", "rejected", "risk_approved", "blocked", "routed", "filled", "cancelled")
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    EVENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_UTC_FIELD_NUMBER: _ClassVar[int]
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    SIDE_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    ORDER_TYPE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_PRICE_FIELD_NUMBER: _ClassVar[int]
    POLICY_DECISIONS_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    STREAM_VERSION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    VALIDATED_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    RISK_APPROVED_FIELD_NUMBER: _ClassVar[int]
    BLOCKED_FIELD_NUMBER: _ClassVar[int]
    ROUTED_FIELD_NUMBER: _ClassVar[int]
    FILLED_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    event_type: str
    event_version: str
    event_id: str
    trace_id: str
    timestamp_utc: _timestamp_pb2.Timestamp
    order_id: str
    account_id: str
    symbol: str
    side: _common_pb2.Side
    quantity: int
    order_type: _common_pb2.OrderType
    limit_price: str
    policy_decisions: _containers.RepeatedCompositeFieldContainer[_common_pb2.PolicyDecision]
    actor: _common_pb2.Actor
    stream_version: int
    state: _order_pb2.OrderState
    accepted: OrderAccepted
    validated: OrderValidated
    rejected: OrderRejected
    risk_approved: OrderRiskApproved
    blocked: OrderBlocked
    routed: OrderRouted
    filled: OrderFilled
    cancelled: OrderCancelled
    def __init__(self, event_type: _Optional[str] = ..., event_version: _Optional[str] = ..., event_id: _Optional[str] = ..., trace_id: _Optional[str] = ..., timestamp_utc: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., order_id: _Optional[str] = ..., account_id: _Optional[str] = ..., symbol: _Optional[str] = ..., side: _Optional[_Union[_common_pb2.Side, str]] = ..., quantity: _Optional[int] = ..., order_type: _Optional[_Union[_common_pb2.OrderType, str]] = ..., limit_price: _Optional[str] = ..., policy_decisions: _Optional[_Iterable[_Union[_common_pb2.PolicyDecision, _Mapping]]] = ..., actor: _Optional[_Union[_common_pb2.Actor, _Mapping]] = ..., stream_version: _Optional[int] = ..., state: _Optional[_Union[_order_pb2.OrderState, str]] = ..., accepted: _Optional[_Union[OrderAccepted, _Mapping]] = ..., validated: _Optional[_Union[OrderValidated, _Mapping]] = ..., rejected: _Optional[_Union[OrderRejected, _Mapping]] = ..., risk_approved: _Optional[_Union[OrderRiskApproved, _Mapping]] = ..., blocked: _Optional[_Union[OrderBlocked, _Mapping]] = ..., routed: _Optional[_Union[OrderRouted, _Mapping]] = ..., filled: _Optional[_Union[OrderFilled, _Mapping]] = ..., cancelled: _Optional[_Union[OrderCancelled, _Mapping]] = ...) -> None: ...

class OrderAccepted(_message.Message):
    __slots__ = ("client_order_id", "advisor_id", "time_in_force")
    CLIENT_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    ADVISOR_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_IN_FORCE_FIELD_NUMBER: _ClassVar[int]
    client_order_id: str
    advisor_id: str
    time_in_force: _common_pb2.TimeInForce
    def __init__(self, client_order_id: _Optional[str] = ..., advisor_id: _Optional[str] = ..., time_in_force: _Optional[_Union[_common_pb2.TimeInForce, str]] = ...) -> None: ...

class OrderValidated(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class OrderRejected(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...

class OrderRiskApproved(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class OrderBlocked(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...

class OrderRouted(_message.Message):
    __slots__ = ("venue", "reason")
    VENUE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    venue: str
    reason: str
    def __init__(self, venue: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class OrderFilled(_message.Message):
    __slots__ = ("fill", "cumulative_quantity", "leaves_quantity", "average_price")
    FILL_FIELD_NUMBER: _ClassVar[int]
    CUMULATIVE_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    LEAVES_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    AVERAGE_PRICE_FIELD_NUMBER: _ClassVar[int]
    fill: _order_pb2.Fill
    cumulative_quantity: int
    leaves_quantity: int
    average_price: str
    def __init__(self, fill: _Optional[_Union[_order_pb2.Fill, _Mapping]] = ..., cumulative_quantity: _Optional[int] = ..., leaves_quantity: _Optional[int] = ..., average_price: _Optional[str] = ...) -> None: ...

class OrderCancelled(_message.Message):
    __slots__ = ("reason", "cancelled_quantity")
    REASON_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    reason: str
    cancelled_quantity: int
    def __init__(self, reason: _Optional[str] = ..., cancelled_quantity: _Optional[int] = ...) -> None: ...
