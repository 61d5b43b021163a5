"""The handler behind every contract-derived route: authenticate, map, check, call, answer.

One generic handler serves every HTTP binding. Entitlements follow the
contracts' field names: a request's ``advisor_id`` must be the caller, a
request's ``account_id`` must be assigned to the caller, and every
``account_id`` an answer carries must be assigned to the caller too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import grpc
import orjson
import protovalidate
from google.protobuf import message_factory
from google.protobuf.message import Message
from starlette.requests import Request
from starlette.responses import Response

from brokermesh.domain import states
from brokermesh.mesh.pipeline import violation_field
from brokermesh.services.gateway import errors, jsonmap
from brokermesh.services.gateway.auth import AuthError, Principal, TokenVerifier
from brokermesh.services.gateway.entitlements import Entitlements
from brokermesh.services.gateway.observability import observe_segment, request_info
from brokermesh.services.gateway.openapi import success_status
from brokermesh.services.gateway.routes import HttpBinding, path_param_name
from brokermesh.trading.v1 import order_entry_pb2

#: A bound gRPC method: request in, response out.
Rpc = Callable[[Message], Awaitable[Message]]
Endpoint = Callable[[Request], Awaitable[Response]]

_VALIDATOR = protovalidate.Validator()
#: The method whose answers end the pre-venue path.
_SUBMIT_ORDER = (
    order_entry_pb2.DESCRIPTOR.services_by_name["OrderEntryService"]
    .methods_by_name["SubmitOrder"]
    .full_name
)
#: The states a just-submitted order can be in once its NewOrderSingle has left.
_AT_VENUE = frozenset({states.ROUTED, states.PARTIALLY_FILLED, states.FILLED})


class Guard:
    """Who may call, and on which advisor's and accounts' behalf."""

    def __init__(self, verifier: TokenVerifier, entitlements: Entitlements) -> None:
        self._verifier = verifier
        self._entitlements = entitlements

    def authenticate(self, request: Request) -> Principal:
        """The caller, from the bearer token; a 401 otherwise."""
        try:
            return self._verifier.authenticate(request.headers.get("authorization"))
        except AuthError as exc:
            raise errors.unauthenticated(str(exc)) from exc

    def check_request(self, principal: Principal, message: Message) -> None:
        """Refuse a request on another advisor's behalf or for an account not assigned."""
        advisor_id = _field_value(message, "advisor_id")
        if advisor_id is not None and advisor_id != principal.subject:
            raise errors.forbidden(
                "ADVISOR_MISMATCH",
                "advisor_id must be the authenticated advisor",
                field="advisor_id",
            )
        account_id = _field_value(message, "account_id")
        if account_id is not None:
            self._check_account(principal, account_id, field="account_id")

    def check_response(self, principal: Principal, message: Message) -> None:
        """Refuse to answer with any account that is not assigned to the caller."""
        for account_id in _account_ids(message):
            self._check_account(principal, account_id, field=None)

    def _check_account(self, principal: Principal, account_id: str, *, field: str | None) -> None:
        if not self._entitlements.allows(principal.subject, account_id):
            raise errors.forbidden(
                "ACCOUNT_NOT_ENTITLED",
                "the account is not assigned to the authenticated advisor",
                field=field,
            )


def make_endpoint(binding: HttpBinding, rpc: Rpc, guard: Guard) -> Endpoint:
    """The Starlette endpoint serving ``binding`` by calling ``rpc``."""
    request_class = message_factory.GetMessageClass(binding.method.input_type)
    ends_prevenue_path = binding.method.full_name == _SUBMIT_ORDER

    async def endpoint(request: Request) -> Response:
        principal = guard.authenticate(request)
        message = await _read_request(binding, request, request_class())
        _validate(message)
        guard.check_request(principal, message)
        observe_segment(request.scope, "gateway_auth")

        try:
            answer = await rpc(message)
        except grpc.aio.AioRpcError as exc:
            raise errors.from_rpc_error(exc) from exc
        guard.check_response(principal, answer)
        if ends_prevenue_path and _handed_to_venue(answer):
            observe_segment(request.scope, "total")
        return _respond(binding, message, answer, request)

    endpoint.__name__ = binding.method.name
    return endpoint


async def _read_request(binding: HttpBinding, request: Request, message: Message) -> Message:
    body = await _read_body(request) if binding.body else None
    try:
        if binding.body == "*":
            jsonmap.message_from_json(body, message)
        elif binding.body:
            jsonmap.message_from_json(body, getattr(message, binding.body), path=binding.body)
        else:
            jsonmap.message_from_params(request.query_params.multi_items(), message)
        path_params = [
            (name, str(request.path_params[path_param_name(name)])) for name in binding.path_fields
        ]
        jsonmap.message_from_params(path_params, message)
    except jsonmap.MappingError as exc:
        raise errors.invalid(exc.field, exc.message) from exc
    return message


async def _read_body(request: Request) -> Any:
    try:
        return jsonmap.parse_json(await request.body())
    except jsonmap.MappingError as exc:
        raise errors.ApiError(400, "MALFORMED_JSON", exc.message) from exc


def _validate(message: Message) -> None:
    violations = _VALIDATOR.collect_violations(message)
    if violations:
        first = violations[0]
        field = violation_field(first)
        raise errors.invalid(field, f"{field}: {first.proto.message}")


def _respond(binding: HttpBinding, sent: Message, answer: Message, request: Request) -> Response:
    payload: Any = jsonmap.message_to_json(answer)
    request_info(request.scope).order_id = _order_id(sent, payload)
    if binding.response_body:
        payload = payload[binding.response_body]

    status = success_status(binding)
    if getattr(answer, "duplicate", False) is True:
        status = 200
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json")


def _handed_to_venue(answer: Message) -> bool:
    """A new order (no repeated client_order_id) whose NewOrderSingle has left: only those
    went the whole pre-venue path; blocked and rejected ones stopped short of it."""
    return not getattr(answer, "duplicate", False) and getattr(answer, "status", None) in _AT_VENUE


def _field_value(message: Message, name: str) -> Any:
    """The value of the field ``name``, or None when the message has no such field."""
    if name not in message.DESCRIPTOR.fields_by_name:
        return None
    return getattr(message, name)


def _order_id(sent: Message, payload: dict[str, Any]) -> str:
    value = payload.get("order_id") or getattr(sent, "order_id", "")
    return value if isinstance(value, str) else ""


def _account_ids(message: Message) -> Iterator[str]:
    """Every non-empty ``account_id`` string anywhere in ``message``."""
    for field, value in message.ListFields():
        if field.cpp_type == field.CPPTYPE_MESSAGE:
            children = value if field.is_repeated else (value,)
            for child in children:
                if isinstance(child, Message):
                    yield from _account_ids(child)
        elif field.name == "account_id" and isinstance(value, str) and value:
            yield value
