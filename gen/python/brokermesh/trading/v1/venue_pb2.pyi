import datetime

from brokermesh.common.v1 import common_pb2 as _common_pb2
from brokermesh.common.v1 import options_pb2 as _options_pb2
from brokermesh.trading.v1 import order_pb2 as _order_pb2
from brokermesh._buf.validate import validate_pb2 as _validate_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SendOrderRequest(_message.Message):
    __slots__ = ("order", "venue")
    ORDER_FIELD_NUMBER: _ClassVar[int]
    VENUE_FIELD_NUMBER: _ClassVar[int]
    order: _order_pb2.Order
    venue: str
    def __init__(self, order: _Optional[_Union[_order_pb2.Order, _Mapping]] = ..., venue: _Optional[str] = ...) -> None: ...

class SendOrderResponse(_message.Message):
    __slots__ = ("sent_at",)
    SENT_AT_FIELD_NUMBER: _ClassVar[int]
    sent_at: _timestamp_pb2.Timestamp
    def __init__(self, sent_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class QueryOrderStatusRequest(_message.Message):
    __slots__ = ("order_id", "venue", "symbol", "side")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    VENUE_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    SIDE_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    venue: str
    symbol: str
    side: _common_pb2.Side
    def __init__(self, order_id: _Optional[str] = ..., venue: _Optional[str] = ..., symbol: _Optional[str] = ..., side: _Optional[_Union[_common_pb2.Side, str]] = ...) -> None: ...

class QueryOrderStatusResponse(_message.Message):
    __slots__ = ("sent_at",)
    SENT_AT_FIELD_NUMBER: _ClassVar[int]
    sent_at: _timestamp_pb2.Timestamp
    def __init__(self, sent_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListVenuesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class VenueStatus(_message.Message):
    __slots__ = ("venue", "logged_on")
    VENUE_FIELD_NUMBER: _ClassVar[int]
    LOGGED_ON_FIELD_NUMBER: _ClassVar[int]
    venue: str
    logged_on: bool
    def __init__(self, venue: _Optional[str] = ..., logged_on: _Optional[bool] = ...) -> None: ...

class ListVenuesResponse(_message.Message):
    __slots__ = ("venues",)
    VENUES_FIELD_NUMBER: _ClassVar[int]
    venues: _containers.RepeatedCompositeFieldContainer[VenueStatus]
    def __init__(self, venues: _Optional[_Iterable[_Union[VenueStatus, _Mapping]]] = ...) -> None: ...
