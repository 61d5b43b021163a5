"""JSON ⇄ Protobuf mapping for the REST edge: pure functions, no I/O.

Conventions, the same both ways:

* field names are the contract's (snake_case); any other key is refused;
* enum values are written without their type's prefix (``BUY`` for ``SIDE_BUY``);
* decimal strings (string fields named ``price`` or ``*_price``) accept JSON
  numbers, read exactly as :class:`~decimal.Decimal` and never as float, and
  are answered as strings (``189.50`` becomes ``"189.50"``);
* integer fields take JSON integers only; int64 values are answered as numbers;
* ``google.protobuf.Timestamp`` is RFC 3339, answered in UTC with milliseconds.

Every refusal is a :class:`MappingError` naming the offending field.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, NoReturn, cast

from google.protobuf import timestamp_pb2
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message

_TIMESTAMP = timestamp_pb2.Timestamp.DESCRIPTOR.full_name
_INT_RANGES: dict[int, tuple[int, int]] = {
    FieldDescriptor.CPPTYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.CPPTYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.CPPTYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.CPPTYPE_UINT64: (0, 2**64 - 1),
}
_FLOATS = (FieldDescriptor.CPPTYPE_FLOAT, FieldDescriptor.CPPTYPE_DOUBLE)
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


class MappingError(ValueError):
    """A request that does not map onto its message; ``field`` is a dotted path or empty."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


# -- reading ---------------------------------------------------------------------------------


def parse_json(body: bytes) -> Any:
    """Parse a request body; numbers with a fraction or exponent become ``Decimal``."""
    try:
        return json.loads(body, parse_float=Decimal, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        raise MappingError("", f"request body is not valid JSON: {exc}") from exc


def message_from_json(value: Any, message: Message, *, path: str = "") -> Message:
    """Fill ``message`` from a parsed JSON object; returns ``message``."""
    if not isinstance(value, Mapping):
        _fail(path, "must be a JSON object")
    fields = message.DESCRIPTOR.fields_by_name
    for key, item in value.items():
        field = cast(FieldDescriptor | None, fields.get(key))
        if field is None:
            _fail(_join(path, key), "is not a field of this request")
        _assign(message, field, item, _join(path, key))
    return message


def message_from_params(params: Iterable[tuple[str, str]], message: Message) -> Message:
    """Set fields of ``message`` from text parameters (path and query string).

    Names are dotted field paths; a repeated field may be given more than once,
    any other field once.
    """
    seen: set[str] = set()
    for name, text in params:
        target, field = _resolve_path(message, name)
        if not field.is_repeated:
            if name in seen:
                _fail(name, "is given more than once")
            seen.add(name)
            _assign(target, field, _text_value(field, text, name), name)
        else:
            _append(target, field, _text_value(field, text, name), name)
    return message


def is_decimal_field(field: FieldDescriptor) -> bool:
    """Whether ``field`` holds a decimal string, by the contracts' naming convention."""
    return field.type == FieldDescriptor.TYPE_STRING and (
        field.name == "price" or field.name.endswith("_price")
    )


def is_map(field: FieldDescriptor) -> bool:
    """Whether ``field`` is a map (a repeated field of map-entry messages)."""
    return field.message_type is not None and bool(field.message_type.GetOptions().map_entry)


def map_entry_fields(field: FieldDescriptor) -> tuple[FieldDescriptor, FieldDescriptor]:
    """The key and value fields of the map field ``field``."""
    entry = message_type(field).fields_by_name
    return entry["key"], entry["value"]


def message_type(field: FieldDescriptor) -> Descriptor:
    """The message type of a message field."""
    if field.message_type is None:
        raise TypeError(f"{field.full_name} is not a message field")
    return field.message_type


def enum_type(field: FieldDescriptor) -> EnumDescriptor:
    """The enum type of an enum field."""
    if field.enum_type is None:
        raise TypeError(f"{field.full_name} is not an enum field")
    return field.enum_type


def enum_prefix(enum: EnumDescriptor) -> str:
    """The prefix every value of ``enum`` carries (``SIDE_`` for ``Side``), or ``""``."""
    prefix = _CAMEL_BOUNDARY.sub("_", enum.name).upper() + "_"
    if all(value.name.startswith(prefix) for value in enum.values):
        return prefix
    return ""


def enum_short_names(enum: EnumDescriptor) -> list[str]:
    """Every value of ``enum`` as written in JSON, in number order."""
    prefix = enum_prefix(enum)
    return [value.name[len(prefix) :] for value in enum.values]


def _assign(message: Message, field: FieldDescriptor, value: Any, path: str) -> None:
    if value is None:
        message.ClearField(field.name)
        return
    if is_map(field):
        _assign_map(message, field, value, path)
    elif field.is_repeated:
        if not isinstance(value, list):
            _fail(path, "must be a JSON array")
        for index, item in enumerate(value):
            _append(message, field, item, f"{path}[{index}]")
    elif field.cpp_type == FieldDescriptor.CPPTYPE_MESSAGE:
        _read_message(value, getattr(message, field.name), path)
    else:
        setattr(message, field.name, _scalar(field, value, path))


def _append(message: Message, field: FieldDescriptor, value: Any, path: str) -> None:
    container = getattr(message, field.name)
    if field.cpp_type == FieldDescriptor.CPPTYPE_MESSAGE:
        _read_message(value, container.add(), path)
    else:
        container.append(_scalar(field, value, path))


def _assign_map(message: Message, field: FieldDescriptor, value: Any, path: str) -> None:
    if not isinstance(value, Mapping):
        _fail(path, "must be a JSON object")
    key_field, value_field = map_entry_fields(field)
    container = getattr(message, field.name)
    for raw_key, item in value.items():
        item_path = f"{path}[{raw_key}]"
        key = _scalar(key_field, _text_value(key_field, raw_key, item_path), item_path)
        if value_field.cpp_type == FieldDescriptor.CPPTYPE_MESSAGE:
            _read_message(item, container[key], item_path)
        else:
            container[key] = _scalar(value_field, item, item_path)


def _read_message(value: Any, message: Message, path: str) -> None:
    if message.DESCRIPTOR.full_name == _TIMESTAMP:
        _read_timestamp(value, message, path)
    else:
        message_from_json(value, message, path=path)


def _read_timestamp(value: Any, message: Message, path: str) -> None:
    if not isinstance(value, str):
        _fail(path, "must be an RFC 3339 timestamp string")
    try:
        message.FromJsonString(value)  # type: ignore[attr-defined]
    except ValueError as exc:
        raise MappingError(path, f"is not an RFC 3339 timestamp: {exc}") from exc


def _scalar(field: FieldDescriptor, value: Any, path: str) -> Any:
    cpp = field.cpp_type
    if cpp in _INT_RANGES:
        return _integer(cpp, value, path)
    if cpp in _FLOATS:
        if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
            _fail(path, "must be a number")
        return float(value)
    if cpp == FieldDescriptor.CPPTYPE_BOOL:
        if not isinstance(value, bool):
            _fail(path, "must be true or false")
        return value
    if cpp == FieldDescriptor.CPPTYPE_ENUM:
        return _enum_number(enum_type(field), value, path)
    if field.type == FieldDescriptor.TYPE_BYTES:
        return _bytes(value, path)
    if is_decimal_field(field):
        return _decimal_string(value, path)
    if not isinstance(value, str):
        _fail(path, "must be a string")
    return value


def _integer(cpp: int, value: Any, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(path, "must be an integer")
    low, high = _INT_RANGES[cpp]
    if not low <= value <= high:
        _fail(path, f"must be between {low} and {high}")
    return value


def _enum_number(enum: EnumDescriptor, value: Any, path: str) -> int:
    if not isinstance(value, str):
        _fail(path, f"must be one of {', '.join(enum_short_names(enum))}")
    prefix = enum_prefix(enum)
    found = enum.values_by_name.get(prefix + value) or enum.values_by_name.get(value)
    if found is None:
        _fail(path, f"must be one of {', '.join(enum_short_names(enum))}")
    return int(found.number)


def _decimal_string(value: Any, path: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        _fail(path, "must be a decimal number")
    # "f" keeps every digit the client wrote: Decimal("189.50") stays "189.50".
    return format(Decimal(value), "f")


def _bytes(value: Any, path: str) -> bytes:
    if not isinstance(value, str):
        _fail(path, "must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MappingError(path, "is not valid base64") from exc


def _resolve_path(message: Message, dotted: str) -> tuple[Message, FieldDescriptor]:
    """The message that holds the last field of ``dotted``, and that field."""
    target = message
    parts = dotted.split(".")
    for index, part in enumerate(parts):
        field = cast(FieldDescriptor | None, target.DESCRIPTOR.fields_by_name.get(part))
        if field is None:
            _fail(dotted, "is not a field of this request")
        if index == len(parts) - 1:
            return target, field
        if field.cpp_type != FieldDescriptor.CPPTYPE_MESSAGE or field.is_repeated:
            _fail(dotted, "cannot be set from a URL parameter")
        target = getattr(target, part)
    _fail(dotted, "is not a field of this request")


def _text_value(field: FieldDescriptor, text: str, path: str) -> Any:
    """A URL parameter's text as the JSON value it stands for."""
    cpp = field.cpp_type
    if cpp in _INT_RANGES:
        if not re.fullmatch(r"[+-]?[0-9]+", text):
            _fail(path, "must be an integer")
        return int(text)
    if cpp in _FLOATS:
        return _text_decimal(text, path)
    if cpp == FieldDescriptor.CPPTYPE_BOOL:
        if text not in ("true", "false"):
            _fail(path, "must be true or false")
        return text == "true"
    if cpp == FieldDescriptor.CPPTYPE_MESSAGE:
        if message_type(field).full_name != _TIMESTAMP:
            _fail(path, "cannot be set from a URL parameter")
    return text


def _text_decimal(text: str, path: str) -> Decimal:
    try:
        return Decimal(text)
    except ArithmeticError as exc:
        raise MappingError(path, "must be a number") from exc


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a number JSON allows")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _fail(path: str, message: str) -> NoReturn:
    raise MappingError(path, f"{path or 'request'} {message}")


# -- writing ---------------------------------------------------------------------------------


def message_to_json(message: Message) -> dict[str, Any]:
    """``message`` as a JSON object holding every field, unset ones at their defaults."""
    return {
        field.name: _field_to_json(message, cast(FieldDescriptor, field))
        for field in message.DESCRIPTOR.fields
    }


def timestamp_to_json(timestamp: timestamp_pb2.Timestamp) -> str:
    """RFC 3339 in UTC with milliseconds: ``2026-03-16T19:04:22.341Z``."""
    moment = datetime.fromtimestamp(timestamp.seconds, UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{timestamp.nanos // 1_000_000:03d}Z"


def _field_to_json(message: Message, field: FieldDescriptor) -> Any:
    value = getattr(message, field.name)
    if is_map(field):
        _, value_field = map_entry_fields(field)
        return {str(key): _value_to_json(value_field, item) for key, item in value.items()}
    if field.is_repeated:
        return [_value_to_json(field, item) for item in value]
    if field.has_presence and not message.HasField(field.name):
        return None
    return _value_to_json(field, value)


def _value_to_json(field: FieldDescriptor, value: Any) -> Any:
    cpp = field.cpp_type
    if cpp == FieldDescriptor.CPPTYPE_MESSAGE:
        if value.DESCRIPTOR.full_name == _TIMESTAMP:
            return timestamp_to_json(value)
        return message_to_json(value)
    if cpp == FieldDescriptor.CPPTYPE_ENUM:
        enum = enum_type(field)
        found = enum.values_by_number.get(value)
        return found.name[len(enum_prefix(enum)) :] if found else value
    if field.type == FieldDescriptor.TYPE_BYTES:
        return base64.b64encode(value).decode("ascii")
    return value
