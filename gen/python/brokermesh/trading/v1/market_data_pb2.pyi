import datetime

from brokermesh._buf.validate import validate_pb2 as _validate_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Quote(_message.Message):
    __slots__ = ("venue", "symbol", "bid_price", "bid_size", "ask_price", "ask_size", "last_price", "quoted_at")
    VENUE_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    BID_PRICE_FIELD_NUMBER: _ClassVar[int]
    BID_SIZE_FIELD_NUMBER: _ClassVar[int]
    ASK_PRICE_FIELD_NUMBER: _ClassVar[int]
    ASK_SIZE_FIELD_NUMBER: _ClassVar[int]
    LAST_PRICE_FIELD_NUMBER: _ClassVar[int]
    QUOTED_AT_FIELD_NUMBER: _ClassVar[int]
    venue: str
    symbol: str
    bid_price: str
    bid_size: int
    ask_price: str
    ask_size: int
    last_price: str
    quoted_at: _timestamp_pb2.Timestamp
    def __init__(self, venue: _Optional[str] = ..., symbol: _Optional[str] = ..., bid_price: _Optional[str] = ..., bid_size: _Optional[int] = ..., ask_price: _Optional[str] = ..., ask_size: _Optional[int] = ..., last_price: _Optional[str] = ..., quoted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
