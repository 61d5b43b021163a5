from brokermesh.common.v1 import common_pb2 as _common_pb2
from brokermesh.common.v1 import options_pb2 as _options_pb2
from brokermesh.trading.v1 import order_pb2 as _order_pb2
from brokermesh._buf.validate import validate_pb2 as _validate_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ValidateOrderRequest(_message.Message):
    __slots__ = ("order",)
    ORDER_FIELD_NUMBER: _ClassVar[int]
    order: _order_pb2.Order
    def __init__(self, order: _Optional[_Union[_order_pb2.Order, _Mapping]] = ...) -> None: ...

class ValidateOrderResponse(_message.Message):
    __slots__ = ("passed", "decisions")
    PASSED_FIELD_NUMBER: _ClassVar[int]
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    passed: bool
    decisions: _containers.RepeatedCompositeFieldContainer[_common_pb2.PolicyDecision]
    def __init__(self, passed: _Optional[bool] = ..., decisions: _Optional[_Iterable[_Union[_common_pb2.PolicyDecision, _Mapping]]] = ...) -> None: ...
