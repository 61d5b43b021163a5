from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Side(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SIDE_UNSPECIFIED: _ClassVar[Side]
    SIDE_BUY: _ClassVar[Side]
    SIDE_SELL: _ClassVar[Side]

class OrderType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ORDER_TYPE_UNSPECIFIED: _ClassVar[OrderType]
    ORDER_TYPE_MARKET: _ClassVar[OrderType]
    ORDER_TYPE_LIMIT: _ClassVar[OrderType]

class TimeInForce(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TIME_IN_FORCE_UNSPECIFIED: _ClassVar[TimeInForce]
    TIME_IN_FORCE_DAY: _ClassVar[TimeInForce]
    TIME_IN_FORCE_IOC: _ClassVar[TimeInForce]
    TIME_IN_FORCE_GTC: _ClassVar[TimeInForce]

class ActorType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACTOR_TYPE_UNSPECIFIED: _ClassVar[ActorType]
    ACTOR_TYPE_ADVISOR: _ClassVar[ActorType]
    ACTOR_TYPE_OPERATOR: _ClassVar[ActorType]
    ACTOR_TYPE_SYSTEM: _ClassVar[ActorType]
    ACTOR_TYPE_VENUE: _ClassVar[ActorType]

class DecisionResult(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DECISION_RESULT_UNSPECIFIED: _ClassVar[DecisionResult]
    DECISION_RESULT_PASS: _ClassVar[DecisionResult]
    DECISION_RESULT_FAIL: _ClassVar[DecisionResult]
SIDE_UNSPECIFIED: Side
SIDE_BUY: Side
SIDE_SELL: Side
ORDER_TYPE_UNSPECIFIED: OrderType
ORDER_TYPE_MARKET: OrderType
ORDER_TYPE_LIMIT: OrderType
TIME_IN_FORCE_UNSPECIFIED: TimeInForce
TIME_IN_FORCE_DAY: TimeInForce
TIME_IN_FORCE_IOC: TimeInForce
TIME_IN_FORCE_GTC: TimeInForce
ACTOR_TYPE_UNSPECIFIED: ActorType
ACTOR_TYPE_ADVISOR: ActorType
ACTOR_TYPE_OPERATOR: ActorType
ACTOR_TYPE_SYSTEM: ActorType
ACTOR_TYPE_VENUE: ActorType
DECISION_RESULT_UNSPECIFIED: DecisionResult
DECISION_RESULT_PASS: DecisionResult
DECISION_RESULT_FAIL: DecisionResult

class Actor(_message.Message):
    __slots__ = ("type", "id")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    type: ActorType
    id: str
    def __init__(self, type: _Optional[_Union[ActorType, str]] = ..., id: _Optional[str] = ...) -> None: ...

class PolicyDecision(_message.Message):
    __slots__ = ("policy", "result", "reason")
    POLICY_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    policy: str
    result: DecisionResult
    reason: str
    def __init__(self, policy: _Optional[str] = ..., result: _Optional[_Union[DecisionResult, str]] = ..., reason: _Optional[str] = ...) -> None: ...
