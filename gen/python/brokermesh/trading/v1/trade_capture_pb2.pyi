from brokermesh.trading.v1 import order_pb2 as _order_pb2
from buf.validate import validate_pb2 as _validate_pb2
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
EXECUTION_KIND_UNSPECIFIED: ExecutionKind
EXECUTION_KIND_ACKNOWLEDGED: ExecutionKind
EXECUTION_KIND_FILL: ExecutionKind
EXECUTION_KIND_REJECTED: ExecutionKind
EXECUTION_KIND_CANCELLED: ExecutionKind

class RecordExecutionRequest(_message.Message):
    __slots__ = ("order_id", "kind", "fill", "cumulative_quantity", "leaves_quantity", "venue", "venue_order_id", "text", "exec_id")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    FILL_FIELD_NUMBER: _ClassVar[int]
    CUMULATIVE_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    LEAVES_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    VENUE_FIELD_NUMBER: _ClassVar[int]
    VENUE_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    EXEC_ID_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    kind: ExecutionKind
    fill: _order_pb2.Fill
    cumulative_quantity: int
    leaves_quantity: int
    venue: str
    venue_order_id: str
    text: str
    exec_id: str
    def __init__(self, order_id: _Optional[str] = ..., kind: _Optional[_Union[ExecutionKind, str]] = ..., fill: _Optional[_Union[_order_pb2.Fill, _Mapping]] = ..., cumulative_quantity: _Optional[int] = ..., leaves_quantity: _Optional[int] = ..., venue: _Optional[str] = ..., venue_order_id: _Optional[str] = ..., text: _Optional[str] = ..., exec_id: _Optional[str] = ...) -> None: ...

class RecordExecutionResponse(_message.Message):
    __slots__ = ("state", "recorded")
    STATE_FIELD_NUMBER: _ClassVar[int]
    RECORDED_FIELD_NUMBER: _ClassVar[int]
    state: _order_pb2.OrderState
    recorded: bool
    def __init__(self, state: _Optional[_Union[_order_pb2.OrderState, str]] = ..., recorded: _Optional[bool] = ...) -> None: ...
