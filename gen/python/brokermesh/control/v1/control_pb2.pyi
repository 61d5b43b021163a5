import datetime

from brokermesh.common.v1 import common_pb2 as _common_pb2
from brokermesh.common.v1 import options_pb2 as _options_pb2
from brokermesh._buf.validate import validate_pb2 as _validate_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DegradationMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DEGRADATION_MODE_UNSPECIFIED: _ClassVar[DegradationMode]
    DEGRADATION_MODE_NORMAL: _ClassVar[DegradationMode]
    DEGRADATION_MODE_AI_DEGRADED: _ClassVar[DegradationMode]
    DEGRADATION_MODE_REDUCED: _ClassVar[DegradationMode]
    DEGRADATION_MODE_EMERGENCY: _ClassVar[DegradationMode]

class ChangeOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CHANGE_OUTCOME_UNSPECIFIED: _ClassVar[ChangeOutcome]
    CHANGE_OUTCOME_INTENDED: _ClassVar[ChangeOutcome]
    CHANGE_OUTCOME_APPLIED: _ClassVar[ChangeOutcome]
    CHANGE_OUTCOME_NOT_APPLIED: _ClassVar[ChangeOutcome]
DEGRADATION_MODE_UNSPECIFIED: DegradationMode
DEGRADATION_MODE_NORMAL: DegradationMode
DEGRADATION_MODE_AI_DEGRADED: DegradationMode
DEGRADATION_MODE_REDUCED: DegradationMode
DEGRADATION_MODE_EMERGENCY: DegradationMode
CHANGE_OUTCOME_UNSPECIFIED: ChangeOutcome
CHANGE_OUTCOME_INTENDED: ChangeOutcome
CHANGE_OUTCOME_APPLIED: ChangeOutcome
CHANGE_OUTCOME_NOT_APPLIED: ChangeOutcome

class TradingControls(_message.Message):
    __slots__ = ("trading_halted", "mode", "reason", "updated_by", "updated_at", "revision", "change_id")
    TRADING_HALTED_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    UPDATED_BY_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    CHANGE_ID_FIELD_NUMBER: _ClassVar[int]
    trading_halted: bool
    mode: DegradationMode
    reason: str
    updated_by: _common_pb2.Actor
    updated_at: _timestamp_pb2.Timestamp
    revision: int
    change_id: str
    def __init__(self, trading_halted: _Optional[bool] = ..., mode: _Optional[_Union[DegradationMode, str]] = ..., reason: _Optional[str] = ..., updated_by: _Optional[_Union[_common_pb2.Actor, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., revision: _Optional[int] = ..., change_id: _Optional[str] = ...) -> None: ...

class ControlChange(_message.Message):
    __slots__ = ("change_id", "before", "after", "actor", "reason", "changed_at", "outcome", "authenticated_caller", "outcome_detail")
    CHANGE_ID_FIELD_NUMBER: _ClassVar[int]
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CHANGED_AT_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    AUTHENTICATED_CALLER_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_DETAIL_FIELD_NUMBER: _ClassVar[int]
    change_id: str
    before: TradingControls
    after: TradingControls
    actor: _common_pb2.Actor
    reason: str
    changed_at: _timestamp_pb2.Timestamp
    outcome: ChangeOutcome
    authenticated_caller: str
    outcome_detail: str
    def __init__(self, change_id: _Optional[str] = ..., before: _Optional[_Union[TradingControls, _Mapping]] = ..., after: _Optional[_Union[TradingControls, _Mapping]] = ..., actor: _Optional[_Union[_common_pb2.Actor, _Mapping]] = ..., reason: _Optional[str] = ..., changed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., outcome: _Optional[_Union[ChangeOutcome, str]] = ..., authenticated_caller: _Optional[str] = ..., outcome_detail: _Optional[str] = ...) -> None: ...

class GetTradingControlsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetTradingControlsResponse(_message.Message):
    __slots__ = ("controls",)
    CONTROLS_FIELD_NUMBER: _ClassVar[int]
    controls: TradingControls
    def __init__(self, controls: _Optional[_Union[TradingControls, _Mapping]] = ...) -> None: ...

class SetKillSwitchRequest(_message.Message):
    __slots__ = ("trading_halted", "reason", "actor")
    TRADING_HALTED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    trading_halted: bool
    reason: str
    actor: _common_pb2.Actor
    def __init__(self, trading_halted: _Optional[bool] = ..., reason: _Optional[str] = ..., actor: _Optional[_Union[_common_pb2.Actor, _Mapping]] = ...) -> None: ...

class SetKillSwitchResponse(_message.Message):
    __slots__ = ("controls",)
    CONTROLS_FIELD_NUMBER: _ClassVar[int]
    controls: TradingControls
    def __init__(self, controls: _Optional[_Union[TradingControls, _Mapping]] = ...) -> None: ...

class SetDegradationModeRequest(_message.Message):
    __slots__ = ("mode", "reason", "actor")
    MODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    mode: DegradationMode
    reason: str
    actor: _common_pb2.Actor
    def __init__(self, mode: _Optional[_Union[DegradationMode, str]] = ..., reason: _Optional[str] = ..., actor: _Optional[_Union[_common_pb2.Actor, _Mapping]] = ...) -> None: ...

class SetDegradationModeResponse(_message.Message):
    __slots__ = ("controls",)
    CONTROLS_FIELD_NUMBER: _ClassVar[int]
    controls: TradingControls
    def __init__(self, controls: _Optional[_Union[TradingControls, _Mapping]] = ...) -> None: ...

class ListControlChangesRequest(_message.Message):
    __slots__ = ("limit",)
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    limit: int
    def __init__(self, limit: _Optional[int] = ...) -> None: ...

class ListControlChangesResponse(_message.Message):
    __slots__ = ("changes",)
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    changes: _containers.RepeatedCompositeFieldContainer[ControlChange]
    def __init__(self, changes: _Optional[_Iterable[_Union[ControlChange, _Mapping]]] = ...) -> None: ...
