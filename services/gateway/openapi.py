"""The gateway's OpenAPI document, generated from the contracts at start-up.

Paths come from the HTTP bindings; component schemas from the message and
enum descriptors, written with the same JSON conventions the gateway speaks
(enum short names, decimal strings, RFC 3339 timestamps), and carrying the
protovalidate constraints that map directly onto JSON Schema keywords.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from google.protobuf import timestamp_pb2
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor

from brokermesh._buf.validate import validate_pb2
from brokermesh.services.gateway.jsonmap import (
    enum_short_names,
    enum_type,
    is_decimal_field,
    is_map,
    map_entry_fields,
    message_type,
)
from brokermesh.services.gateway.routes import HttpBinding

_ERROR_REF = {"$ref": "#/components/schemas/Error"}
_INTEGERS: dict[int, dict[str, Any]] = {
    FieldDescriptor.CPPTYPE_INT32: {"type": "integer", "format": "int32"},
    FieldDescriptor.CPPTYPE_INT64: {"type": "integer", "format": "int64"},
    FieldDescriptor.CPPTYPE_UINT32: {"type": "integer", "format": "int32", "minimum": 0},
    FieldDescriptor.CPPTYPE_UINT64: {"type": "integer", "format": "int64", "minimum": 0},
}
_ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "field"],
            "properties": {
                "code": {"type": "string", "description": "Stable error code."},
                "message": {"type": "string"},
                "field": {
                    "type": "string",
                    "nullable": True,
                    "description": "Request field at fault, if any.",
                },
            },
        },
    },
}
#: Error answers every operation may give, besides its own success status.
_ERRORS = {
    "400": "Malformed or invalid request",
    "401": "Missing or invalid bearer token",
    "403": "Not entitled to the advisor or account",
    "404": "Not found",
    "503": "Upstream service unavailable",
    "504": "Upstream deadline exceeded",
}


def build_openapi(
    bindings: Iterable[HttpBinding], *, title: str = "brokermesh API", version: str = "v1"
) -> dict[str, Any]:
    """An OpenAPI 3.0 document for ``bindings``."""
    schemas = _Schemas()
    paths: dict[str, dict[str, Any]] = {}
    for binding in bindings:
        operation = _operation(binding, schemas)
        paths.setdefault(binding.openapi_path, {})[binding.verb.lower()] = operation
    return {
        "openapi": "3.0.3",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {
            "schemas": {**schemas.schemas, "Error": _ERROR_SCHEMA},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
            },
        },
        "security": [{"bearer": []}],
    }


def success_status(binding: HttpBinding) -> int:
    """The status a successful call answers: 201 for a POST that creates, else 200."""
    return 201 if binding.verb == "POST" else 200


def _operation(binding: HttpBinding, schemas: _Schemas) -> dict[str, Any]:
    method = binding.method
    operation: dict[str, Any] = {
        "operationId": method.name,
        "tags": [method.containing_service.name],
        "parameters": _parameters(binding, schemas),
        "responses": _responses(binding, schemas),
    }
    if binding.body:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _body_schema(binding, schemas)}},
        }
    return operation


def _parameters(binding: HttpBinding, schemas: _Schemas) -> list[dict[str, Any]]:
    parameters = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": schemas.field(_path_field(binding.method.input_type, name)),
        }
        for name in binding.path_fields
    ]
    for field in binding.query_fields:
        if field.cpp_type == FieldDescriptor.CPPTYPE_MESSAGE:
            continue
        parameters.append(
            {"name": field.name, "in": "query", "required": False, "schema": schemas.field(field)}
        )
    return parameters


def _responses(binding: HttpBinding, schemas: _Schemas) -> dict[str, Any]:
    output = binding.method.output_type
    if binding.response_body:
        schema = schemas.field(output.fields_by_name[binding.response_body])
    else:
        schema = schemas.ref(output)
    responses: dict[str, Any] = {
        str(success_status(binding)): {
            "description": "OK",
            "content": {"application/json": {"schema": schema}},
        },
    }
    if binding.verb == "POST":
        responses["200"] = {
            "description": "Repeat of an earlier request: the original result",
            "content": {"application/json": {"schema": schema}},
        }
    for status, description in _ERRORS.items():
        responses[status] = {
            "description": description,
            "content": {"application/json": {"schema": _ERROR_REF}},
        }
    return responses


def _body_schema(binding: HttpBinding, schemas: _Schemas) -> dict[str, Any]:
    if binding.body == "*":
        return schemas.ref(binding.method.input_type)
    return schemas.field(binding.method.input_type.fields_by_name[binding.body])


def _path_field(message: Descriptor, dotted: str) -> FieldDescriptor:
    *parents, last = dotted.split(".")
    for part in parents:
        message = message_type(message.fields_by_name[part])
    return message.fields_by_name[last]


class _Schemas:
    """Component schemas, added as messages and enums are first referred to."""

    def __init__(self) -> None:
        self.schemas: dict[str, dict[str, Any]] = {}
        self._names: dict[str, str] = {}

    def ref(self, descriptor: Descriptor | EnumDescriptor) -> dict[str, Any]:
        """A ``$ref`` to ``descriptor``'s schema, adding the schema when new."""
        name = self._names.get(descriptor.full_name)
        if name is None:
            name = self._name_for(descriptor)
            self._names[descriptor.full_name] = name
            self.schemas[name] = {}  # placeholder first: messages may refer to themselves
            self.schemas[name] = self._build(descriptor)
        return {"$ref": f"#/components/schemas/{name}"}

    def field(self, field: FieldDescriptor) -> dict[str, Any]:
        """The schema of one field, with its protovalidate constraints."""
        if is_map(field):
            value = self._single(map_entry_fields(field)[1])
            return {"type": "object", "additionalProperties": value}
        item = self._single(field)
        if field.is_repeated:
            return {"type": "array", "items": item}
        return item

    def _single(self, field: FieldDescriptor) -> dict[str, Any]:
        cpp = field.cpp_type
        if cpp == FieldDescriptor.CPPTYPE_MESSAGE:
            message = message_type(field)
            if message.full_name == timestamp_pb2.Timestamp.DESCRIPTOR.full_name:
                return {"type": "string", "format": "date-time"}
            return self.ref(message)
        if cpp == FieldDescriptor.CPPTYPE_ENUM:
            return self.ref(enum_type(field))
        return {**_scalar_schema(field), **_constraints(field)}

    def _build(self, descriptor: Descriptor | EnumDescriptor) -> dict[str, Any]:
        if isinstance(descriptor, EnumDescriptor):
            return {"type": "string", "enum": enum_short_names(descriptor)}
        return {
            "type": "object",
            "additionalProperties": False,
            "properties": {field.name: self.field(field) for field in descriptor.fields},
        }

    def _name_for(self, descriptor: Descriptor | EnumDescriptor) -> str:
        taken = set(self._names.values())
        return descriptor.name if descriptor.name not in taken else descriptor.full_name


def _scalar_schema(field: FieldDescriptor) -> dict[str, Any]:
    cpp = field.cpp_type
    if cpp in _INTEGERS:
        return dict(_INTEGERS[cpp])
    if cpp == FieldDescriptor.CPPTYPE_BOOL:
        return {"type": "boolean"}
    if cpp in (FieldDescriptor.CPPTYPE_FLOAT, FieldDescriptor.CPPTYPE_DOUBLE):
        return {"type": "number"}
    if field.type == FieldDescriptor.TYPE_BYTES:
        return {"type": "string", "format": "byte"}
    if is_decimal_field(field):
        return {"type": "string", "format": "decimal"}
    return {"type": "string"}


def _constraints(field: FieldDescriptor) -> dict[str, Any]:
    """JSON Schema keywords for the protovalidate rules that have a direct equivalent."""
    options = field.GetOptions()
    extension: Any = validate_pb2.field
    if not options.HasExtension(extension):
        return {}
    rules = options.Extensions[extension]
    kind = rules.WhichOneof("type")
    if kind == "string":
        return _string_constraints(rules.string)
    if kind in ("int32", "int64", "uint32", "uint64", "sint32", "sint64"):
        return _number_constraints(getattr(rules, kind))
    return {}


def _string_constraints(rules: Any) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for rule, keyword in (
        ("pattern", "pattern"),
        ("min_len", "minLength"),
        ("max_len", "maxLength"),
    ):
        if rules.HasField(rule):
            found[keyword] = getattr(rules, rule)
    return found


def _number_constraints(rules: Any) -> dict[str, Any]:
    found: dict[str, Any] = {}
    if rules.HasField("gt"):
        found.update(minimum=rules.gt, exclusiveMinimum=True)
    elif rules.HasField("gte"):
        found["minimum"] = rules.gte
    if rules.HasField("lt"):
        found.update(maximum=rules.lt, exclusiveMaximum=True)
    elif rules.HasField("lte"):
        found["maximum"] = rules.lte
    return found
