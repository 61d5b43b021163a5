from brokermesh.common.v1 import options_pb2 as _options_pb2
from brokermesh.trading.v1 import order_pb2 as _order_pb2
from brokermesh._buf.validate import validate_pb2 as _validate_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ExecutionKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXECUTION_KIND_UNSPECIFIED: _ClassVar[ExecutionKind]
    EXECUTION_KIND_ACKNOWLEDGED: _ClassVar[ExecutionKind]
    EXECUTION_KIND_FILL: _ClassVar[ExecutionKind]
    EXECUTION_KIND_REJECTED: _ClassVar[ExecutionKind]
    EXECUTION_KIND_CANCELLED: _ClassVar[ExecutionKind]
    EXECUTION_KIND_ORDER_STATUS: _ClassVar[ExecutionKind]

class VenueOrderStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VENUE_ORDER_STATUS_UNSPECIFIED: _ClassVar[VenueOrderStatus]
    VENUE_ORDER_STATUS_NEW: _ClassVar[VenueOrderStatus]
    VENUE_ORDER_STATUS_PARTIALLY_FILLED: _ClassVar[VenueOrderStatus]
    VENUE_ORDER_STATUS_FILLED: _ClassVar[VenueOrderStatus]
    VENUE_ORDER_STATUS_CANCELLED: _ClassVar[VenueOrderStatus]
    VENUE_ORDER_STATUS_REJECTED: _ClassVar[VenueOrderStatus]
EXECUTION_KIND_UNSPECIFIED: ExecutionKind
EXECUTION_KIND_ACKNOWLEDGED: ExecutionKind
EXECUTION_KIND_FILL: ExecutionKind
EXECUTION_KIND_REJECTED: ExecutionKind
EXECUTION_KIND_CANCELLED: ExecutionKind
EXECUTION_KIND_ORDER_STATUS: ExecutionKind
VENUE_ORDER_STATUS_UNSPECIFIED: VenueOrderStatus
VENUE_ORDER_STATUS_NEW: VenueOrderStatus
VENUE_ORDER_STATUS_PARTIALLY_FILLED: VenueOrderStatus
VENUE_ORDER_STATUS_FILLED: VenueOrderStatus
VENUE_ORDER_STATUS_CANCELLED: VenueOrderStatus
VENUE_ORDER_STATUS_REJECTED: VenueOrderStatus

class RecordExecutionRequest(_message.Message):
    __slots__ = ("order_id", "kind", "fill", "cumulative_quantity", "leaves_quantity", "venue", "venue_order_id", "text", "exec_id", "venue_status", "average_price")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    FILL_FIELD_NUMBER: _ClassVar[int]
    CUMULATIVE_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    LEAVES_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    VENUE_FIELD_NUMBER: _ClassVar[int]
    VENUE_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    EXEC_ID_FIELD_NUMBER: _ClassVar[int]
    VENUE_STATUS_FIELD_NUMBER: _ClassVar[int]
    AVERAGE_PRICE_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    kind: ExecutionKind
    fill: _order_pb2.Fill
    cumulative_quantity: int
    leaves_quantity: int
    venue: str
    venue_order_id: str
    text: str
    exec_id: str
    venue_status: VenueOrderStatus
    average_price: str
    def __init__(self, order_id: _Optional[str] = ..., kind: _Optional[_Union[ExecutionKind, str]] = ..., fill: _Optional[_Union[_order_pb2.Fill, _Mapping]] = ..., cumulative_quantity: _Optional[int] = ..., leaves_quantity: _Optional[int] = ..., venue: _Optional[str] = ..., venue_order_id: _Optional[str] = ..., text: _Optional[str] = ..., exec_id: _Optional[str] = ..., venue_status: _Optional[_Union[VenueOrderStatus, str]] = ..., average_price: _Optional[str] = ...) -> None: ...

class RecordExecutionResponse(_message.Message):
    __slots__ = ("state", "recorded", "break_recorded")
    STATE_FIELD_NUMBER: _ClassVar[int]
    RECORDED_FIELD_NUMBER: _ClassVar[int]
    BREAK_RECORDED_FIELD_NUMBER: _ClassVar[int]
    state: _order_pb2.OrderState
    recorded: bool
    break_recorded: bool
    def __init__(self, state: _Optional[_Union[_order_pb2.OrderState, str]] = ..., recorded: _Optional[bool] = ..., break_recorded: _Optional[bool] = ...) -> None: ...
