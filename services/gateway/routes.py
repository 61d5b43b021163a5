"""HTTP bindings derived from the contracts' ``google.api.http`` rules.

The gateway writes no route by hand: for each gRPC service it fronts it reads
every method's HttpRule (and its additional bindings) from the descriptor
pool, and turns the path template into a Starlette path. A rule that names a
field the request message lacks fails at start-up, not on the first request.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from google.api import annotations_pb2, http_pb2  # type: ignore[import-untyped]
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor

# The fronted services' modules: importing them loads their descriptors into the pool.
from brokermesh.trading.v1 import order_entry_pb2_grpc, order_query_pb2_grpc  # noqa: F401

#: ``{field}`` or ``{field=pattern}`` in a path template.
_VARIABLE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.]*)(?:=([^}]*))?\}")
_VERBS = ("get", "put", "post", "delete", "patch")


@dataclass(frozen=True, slots=True)
class HttpBinding:
    """One HTTP verb and path bound to one gRPC method."""

    method: MethodDescriptor
    #: Upper-case HTTP method.
    verb: str
    #: Path template as the contract writes it, such as ``/v1/orders/{order_id}``.
    template: str
    #: ``"*"`` for the whole body, a field name for one field, ``""`` for no body.
    body: str
    #: Field of the response to answer with; ``""`` answers the whole response.
    response_body: str

    @property
    def service(self) -> str:
        """Full name of the gRPC service."""
        return str(self.method.containing_service.full_name)

    @property
    def path(self) -> str:
        """The template as a Starlette path: ``{order_id}``, ``{name:path}`` for ``**``."""
        return _VARIABLE.sub(_starlette_variable, self.template)

    @property
    def openapi_path(self) -> str:
        """The template as an OpenAPI path: variables without their patterns."""
        return _VARIABLE.sub(lambda match: "{" + match.group(1) + "}", self.template)

    @property
    def path_fields(self) -> tuple[str, ...]:
        """Dotted request fields bound from the path, in template order."""
        return tuple(match.group(1) for match in _VARIABLE.finditer(self.template))

    @property
    def query_fields(self) -> tuple[FieldDescriptor, ...]:
        """Top-level request fields a client may put in the query string."""
        if self.body == "*":
            return ()
        bound = {name.split(".", 1)[0] for name in self.path_fields} | {self.body}
        return tuple(f for f in self.method.input_type.fields if f.name not in bound)


def derive_bindings(services: Iterable[str]) -> list[HttpBinding]:
    """Every HTTP binding of ``services``' methods, in contract order."""
    pool = descriptor_pool.Default()
    bindings: list[HttpBinding] = []
    for name in services:
        for method in pool.FindServiceByName(name).methods:
            bindings.extend(_method_bindings(method))
    return bindings


def path_param_name(field_path: str) -> str:
    """Starlette's name for the path variable bound to ``field_path``."""
    return field_path.replace(".", "__")


def stub_class(service: str) -> Any:
    """The generated ``<Service>Stub`` class of ``service``."""
    descriptor = descriptor_pool.Default().FindServiceByName(service)
    module_name = descriptor.file.name.removesuffix(".proto").replace("/", ".") + "_pb2_grpc"
    module = importlib.import_module(module_name)
    return getattr(module, f"{descriptor.name}Stub")


def _method_bindings(method: MethodDescriptor) -> list[HttpBinding]:
    options = method.GetOptions()
    if not options.HasExtension(annotations_pb2.http):
        return []
    rule = options.Extensions[annotations_pb2.http]
    return [_binding(method, each) for each in (rule, *rule.additional_bindings)]


def _binding(method: MethodDescriptor, rule: http_pb2.HttpRule) -> HttpBinding:
    kind = rule.WhichOneof("pattern")
    if kind == "custom":
        verb, template = rule.custom.kind, rule.custom.path
    elif kind in _VERBS:
        verb, template = kind, getattr(rule, kind)
    else:
        raise ValueError(f"{method.full_name}: google.api.http rule has no pattern")
    binding = HttpBinding(
        method=method,
        verb=verb.upper(),
        template=template,
        body=rule.body,
        response_body=rule.response_body,
    )
    _check_fields(binding)
    return binding


def _check_fields(binding: HttpBinding) -> None:
    names = [*binding.path_fields]
    if binding.body not in ("", "*"):
        names.append(binding.body)
    for name in names:
        _field_at(binding.method.input_type, name, binding)
    if binding.response_body:
        _field_at(binding.method.output_type, binding.response_body, binding)


def _field_at(message: Descriptor, dotted: str, binding: HttpBinding) -> FieldDescriptor:
    parts = dotted.split(".")
    for index, part in enumerate(parts):
        field = message.fields_by_name.get(part)
        if field is None:
            raise ValueError(
                f"{binding.method.full_name}: {message.full_name} has no field "
                f"{part!r} (named by {binding.verb} {binding.template})"
            )
        if index == len(parts) - 1:
            return field
        if field.message_type is None:
            break
        message = field.message_type
    raise ValueError(f"{binding.method.full_name}: {dotted!r} is not a field path")


def _starlette_variable(match: re.Match[str]) -> str:
    name, pattern = match.group(1), match.group(2)
    multi_segment = pattern is not None and ("/" in pattern or "**" in pattern)
    return "{" + path_param_name(name) + (":path" if multi_segment else "") + "}"
