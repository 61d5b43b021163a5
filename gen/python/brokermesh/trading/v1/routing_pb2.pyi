from brokermesh.common.v1 import options_pb2 as _options_pb2
from brokermesh.trading.v1 import order_pb2 as _order_pb2
from brokermesh._buf.validate import validate_pb2 as _validate_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RouteOrderRequest(_message.Message):
    __slots__ = ("order",)
    ORDER_FIELD_NUMBER: _ClassVar[int]
    order: _order_pb2.Order
    def __init__(self, order: _Optional[_Union[_order_pb2.Order, _Mapping]] = ...) -> None: ...

class VenueCandidate(_message.Message):
    __slots__ = ("venue", "healthy", "quoted_price", "fee_per_share", "effective_price", "quoted_size")
    VENUE_FIELD_NUMBER: _ClassVar[int]
    HEALTHY_FIELD_NUMBER: _ClassVar[int]
    QUOTED_PRICE_FIELD_NUMBER: _ClassVar[int]
    FEE_PER_SHARE_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_PRICE_FIELD_NUMBER: _ClassVar[int]
    QUOTED_SIZE_FIELD_NUMBER: _ClassVar[int]
    venue: str
    healthy: bool
    quoted_price: str
    fee_per_share: str
    effective_price: str
    quoted_size: int
    def __init__(self, venue: _Optional[str] = ..., healthy: _Optional[bool] = ..., quoted_price: _Optional[str] = ..., fee_per_share: _Optional[str] = ..., effective_price: _Optional[str] = ..., quoted_size: _Optional[int] = ...) -> None: ...

class RouteOrderResponse(_message.Message):
    __slots__ = ("venue", "reason", "candidates")
    VENUE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    venue: str
    reason: str
    candidates: _containers.RepeatedCompositeFieldContainer[VenueCandidate]
    def __init__(self, venue: _Optional[str] = ..., reason: _Optional[str] = ..., candidates: _Optional[_Iterable[_Union[VenueCandidate, _Mapping]]] = ...) -> None: ...
