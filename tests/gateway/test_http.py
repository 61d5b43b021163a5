"""The gateway over real HTTP: uvicorn, a real gRPC upstream, and the real PostgreSQL.

The upstream is a small in-process order service behind the platform's own
server bootstrap (so its errors carry the pipeline's trailers); entitlements
come from the seeded ``advisor_accounts`` of the shared ``postgres`` fixture.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import httpx
import pytest
import pytest_asyncio
from google.protobuf import timestamp_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import REGISTRY

from brokermesh.common.v1 import common_pb2
from brokermesh.mesh import server as mesh_server
from brokermesh.mesh import telemetry
from brokermesh.mesh.config import ServiceSettings
from brokermesh.mesh.errors import NotFound
from brokermesh.mesh.manifest import Plane, ServiceManifest
from brokermesh.services.gateway import auth, runner
from brokermesh.services.gateway.settings import GatewaySettings
from brokermesh.trading.v1 import (
    order_entry_pb2,
    order_entry_pb2_grpc,
    order_pb2,
    order_query_pb2,
    order_query_pb2_grpc,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

BLUEPRINT_BODY = b"""{
  "account_id": "ACC-987654",
  "symbol": "AAPL",
  "side": "BUY",
  "quantity": 100,
  "order_type": "LIMIT",
  "limit_price": 189.50,
  "time_in_force": "DAY",
  "advisor_id": "ADV-1207",
  "client_order_id": "CO-332819"
}"""
#: An order already on the book of ADV-2001's account, which ADV-1207 must not see.
OTHER_ADVISORS_ORDER = "ORD-20260316-00000001"
FAKE_UPSTREAM = ServiceManifest(
    name="fake-trading",
    plane=Plane.DATA,
    grpc_port=0,
    serves=("brokermesh.trading.v1.OrderEntryService", "brokermesh.trading.v1.OrderQueryService"),
)


# -- the upstream order services -------------------------------------------------------------


@dataclass
class FakeOrders(
    order_entry_pb2_grpc.OrderEntryServiceServicer, order_query_pb2_grpc.OrderQueryServiceServicer
):
    """Order entry and order query over one in-memory book, idempotent per client order id."""

    views: dict[str, order_query_pb2.OrderView] = field(default_factory=dict)
    by_client_id: dict[tuple[str, str], str] = field(default_factory=dict)
    received: list[order_entry_pb2.SubmitOrderRequest] = field(default_factory=list)
    trace_ids: list[str] = field(default_factory=list)
    #: Cleared by a test to keep submissions waiting in the upstream.
    open_for_business: asyncio.Event = field(default_factory=asyncio.Event)
    #: The state a new order is answered with; set by a test, reset afterwards.
    new_order_state: int = order_pb2.ORDER_STATE_NEW

    async def start(self) -> None:
        self.open_for_business.set()
        self._book(
            order_pb2.Order(
                order_id=OTHER_ADVISORS_ORDER,
                client_order_id="CO-1",
                account_id="ACC-555001",
                advisor_id="ADV-2001",
                symbol="QQQ",
                side=common_pb2.SIDE_SELL,
                quantity=10,
                order_type=common_pb2.ORDER_TYPE_MARKET,
                time_in_force=common_pb2.TIME_IN_FORCE_DAY,
            )
        )

    def register(self, server: grpc.aio.Server) -> None:
        order_entry_pb2_grpc.add_OrderEntryServiceServicer_to_server(self, server)
        order_query_pb2_grpc.add_OrderQueryServiceServicer_to_server(self, server)

    async def stop(self) -> None:
        self.views.clear()

    async def SubmitOrder(
        self, request: order_entry_pb2.SubmitOrderRequest, context: grpc.aio.ServicerContext
    ) -> order_entry_pb2.SubmitOrderResponse:
        self.received.append(request)
        self.trace_ids.append(telemetry.current_trace_id())
        await self.open_for_business.wait()
        key = (request.account_id, request.client_order_id)
        duplicate = key in self.by_client_id
        if not duplicate:
            self.by_client_id[key] = self._book(_order_from(request, len(self.views) + 1))
        view = self.views[self.by_client_id[key]]
        return order_entry_pb2.SubmitOrderResponse(
            order_id=view.order.order_id,
            status=view.state,
            accepted_at=view.order.accepted_at,
            trace_id=telemetry.current_trace_id(),
            risk_decisions=view.policy_decisions,
            duplicate=duplicate,
        )

    async def GetOrder(
        self, request: order_query_pb2.GetOrderRequest, context: grpc.aio.ServicerContext
    ) -> order_query_pb2.GetOrderResponse:
        view = self.views.get(request.order_id)
        if view is None:
            raise NotFound(f"no order {request.order_id}", field="order_id", code="ORDER_NOT_FOUND")
        return order_query_pb2.GetOrderResponse(order=view)

    async def ListOrders(
        self, request: order_query_pb2.ListOrdersRequest, context: grpc.aio.ServicerContext
    ) -> order_query_pb2.ListOrdersResponse:
        views = [v for v in self.views.values() if v.order.account_id == request.account_id]
        return order_query_pb2.ListOrdersResponse(orders=views)

    def _book(self, order: order_pb2.Order) -> str:
        decisions = [
            common_pb2.PolicyDecision(
                policy=name, result=common_pb2.DECISION_RESULT_PASS, reason="within limits"
            )
            for name in ("buying_power", "concentration")
        ]
        self.views[order.order_id] = order_query_pb2.OrderView(
            order=order,
            state=self.new_order_state,
            leaves_quantity=order.quantity,
            policy_decisions=decisions,
            stream_version=1,
        )
        return str(order.order_id)


def _order_from(request: order_entry_pb2.SubmitOrderRequest, number: int) -> order_pb2.Order:
    accepted_at = timestamp_pb2.Timestamp()
    accepted_at.GetCurrentTime()
    return order_pb2.Order(
        order_id=f"ORD-20260316-{number:08d}",
        client_order_id=request.client_order_id,
        account_id=request.account_id,
        advisor_id=request.advisor_id,
        symbol=request.symbol,
        side=request.side,
        quantity=request.quantity,
        order_type=request.order_type,
        limit_price=request.limit_price,
        time_in_force=request.time_in_force,
        accepted_at=accepted_at,
        trace_id=telemetry.current_trace_id(),
    )


# -- fixtures --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Platform:
    """The running gateway, its upstream, and a token issuer for its key."""

    client: httpx.AsyncClient
    orders: FakeOrders
    gateway: runner.RunningGateway
    token_for: Callable[..., str]


@pytest.fixture(scope="module")
def signing_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    keys_dir = tmp_path_factory.mktemp("keys")
    return keys_dir, auth.ensure_key_pair(keys_dir)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def platform(
    postgres: Any, signing_key: tuple[Path, Any], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Platform]:
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        trace.set_tracer_provider(TracerProvider())
    keys_dir, key = signing_key
    orders = FakeOrders()
    upstream = await mesh_server.start(FAKE_UPSTREAM, ServiceSettings(port=0), orders)
    address = f"127.0.0.1:{upstream.port}"
    settings = GatewaySettings(
        port=0,
        http_port=0,
        database_url=postgres.app_dsn,
        data_dir=tmp_path_factory.mktemp("gateway"),
        jwt_public_key_path=keys_dir / "jwt-signing.pub.pem",
        upstreams=f"order-entry={address},ledger={address}",
        entitlements_refresh_s=0.2,
        shutdown_grace_s=1.0,
    )

    def token_for(advisor: str, **options: Any) -> str:
        return auth.issue_token(key, advisor, ttl_s=600, **options)

    try:
        async with runner.running(settings) as gateway:
            base_url = f"http://127.0.0.1:{gateway.http_port}"
            async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
                yield Platform(client, orders, gateway, token_for)
    finally:
        await mesh_server.stop(upstream, orders, grace_s=1.0)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _body(**changes: Any) -> bytes:
    """The blueprint body with ``changes`` (its limit price then travels as 189.5)."""
    body = json.loads(BLUEPRINT_BODY)
    body.update(changes)
    return json.dumps(body).encode()


def _error(response: httpx.Response) -> dict[str, Any]:
    error: dict[str, Any] = response.json()["error"]
    return error


# -- submitting ------------------------------------------------------------------------------


async def test_blueprint_order_is_accepted_with_the_documented_answer(
    platform: Platform,
    caplog: pytest.LogCaptureFixture,
) -> None:
    token = platform.token_for("ADV-1207")

    with caplog.at_level("INFO", logger="brokermesh.services.gateway"):
        response = await platform.client.post(
            "/v1/orders", content=BLUEPRINT_BODY, headers=_bearer(token)
        )

    assert response.status_code == 201, response.text
    answer = response.json()
    assert set(answer) == {
        "order_id",
        "status",
        "accepted_at",
        "trace_id",
        "risk_decisions",
        "duplicate",
    }
    assert re.fullmatch(r"ORD-\d{8}-\d{8}", answer["order_id"])
    assert answer["status"] == "NEW"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", answer["accepted_at"])
    assert answer["risk_decisions"] == [
        {"policy": "buying_power", "result": "PASS", "reason": "within limits"},
        {"policy": "concentration", "result": "PASS", "reason": "within limits"},
    ]
    assert re.fullmatch(r"[0-9a-f]{32}", answer["trace_id"])
    assert platform.orders.trace_ids[-1] == answer["trace_id"]
    assert platform.orders.received[-1].limit_price == "189.50"

    lines = [r for r in caplog.records if getattr(r, "route", None) == "/v1/orders"]
    assert [(r.status, r.http_method) for r in lines] == [(201, "POST")]  # type: ignore[attr-defined]
    assert token not in caplog.text
    assert "CO-332819" not in caplog.text


async def test_repeated_client_order_id_answers_200_with_the_original(
    platform: Platform,
) -> None:
    headers = _bearer(platform.token_for("ADV-1207"))
    body = _body(client_order_id="CO-REPEAT-1")

    first = await platform.client.post("/v1/orders", content=body, headers=headers)
    again = await platform.client.post("/v1/orders", content=body, headers=headers)

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["order_id"] == first.json()["order_id"]
    assert again.json()["duplicate"] is True


async def test_advisor_without_the_account_is_forbidden(platform: Platform) -> None:
    response = await platform.client.post(
        "/v1/orders",
        content=_body(advisor_id="ADV-2001"),
        headers=_bearer(platform.token_for("ADV-2001")),
    )

    assert response.status_code == 403
    assert _error(response) == {
        "code": "ACCOUNT_NOT_ENTITLED",
        "field": "account_id",
        "message": "the account is not assigned to the authenticated advisor",
    }


async def test_order_on_another_advisors_behalf_is_forbidden(platform: Platform) -> None:
    response = await platform.client.post(
        "/v1/orders",
        content=BLUEPRINT_BODY,
        headers=_bearer(platform.token_for("ADV-2001")),
    )

    assert response.status_code == 403
    assert _error(response)["code"] == "ADVISOR_MISMATCH"
    assert _error(response)["field"] == "advisor_id"


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        (
            BLUEPRINT_BODY.replace(b'"quantity": 100', b'"quantity": 100.5'),
            "INVALID_ARGUMENT",
            "quantity",
        ),
        (_body(stop_price=180), "INVALID_ARGUMENT", "stop_price"),
        (_body(side="HOLD"), "INVALID_ARGUMENT", "side"),
        (_body(symbol="aapl"), "INVALID_ARGUMENT", "symbol"),
        (_body(quantity=0), "INVALID_ARGUMENT", "quantity"),
        (_body(limit_price=None), "INVALID_ARGUMENT", "limit_price"),
        (b'{"account_id": "ACC-987654",', "MALFORMED_JSON", None),
    ],
)
async def test_malformed_order_is_refused_naming_the_field(
    platform: Platform,
    body: bytes,
    code: str,
    field: str | None,
) -> None:
    sent = len(platform.orders.received)

    response = await platform.client.post(
        "/v1/orders", content=body, headers=_bearer(platform.token_for("ADV-1207"))
    )

    assert response.status_code == 400, response.text
    assert (_error(response)["code"], _error(response)["field"]) == (code, field)
    assert len(platform.orders.received) == sent


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic QURWOng="}],
)
async def test_request_without_a_valid_token_is_unauthenticated(
    platform: Platform,
    headers: dict[str, str],
) -> None:
    response = await platform.client.post("/v1/orders", content=BLUEPRINT_BODY, headers=headers)

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert _error(response)["code"] == "UNAUTHENTICATED"


async def test_token_from_another_issuer_is_unauthenticated(platform: Platform) -> None:
    token = platform.token_for("ADV-1207", issuer="https://evil.example")

    response = await platform.client.get("/v1/orders/ORD-20260316-00000001", headers=_bearer(token))

    assert response.status_code == 401


# -- reading ---------------------------------------------------------------------------------


async def test_advisor_reads_their_order_as_an_order_view(platform: Platform) -> None:
    headers = _bearer(platform.token_for("ADV-1207"))
    body = BLUEPRINT_BODY.replace(b"CO-332819", b"CO-VIEW-1")
    submitted = await platform.client.post("/v1/orders", content=body, headers=headers)
    order_id = submitted.json()["order_id"]

    response = await platform.client.get(f"/v1/orders/{order_id}", headers=headers)

    assert response.status_code == 200
    view = response.json()
    assert view["order"]["order_id"] == order_id
    assert view["order"]["limit_price"] == "189.50"
    assert view["order"]["side"] == "BUY"
    assert view["state"] == "NEW"
    assert view["leaves_quantity"] == 100


async def test_order_of_an_unassigned_account_is_forbidden(platform: Platform) -> None:
    response = await platform.client.get(
        f"/v1/orders/{OTHER_ADVISORS_ORDER}", headers=_bearer(platform.token_for("ADV-1207"))
    )

    assert response.status_code == 403
    assert _error(response)["code"] == "ACCOUNT_NOT_ENTITLED"


async def test_unknown_order_answers_404_with_the_upstream_code(platform: Platform) -> None:
    response = await platform.client.get(
        "/v1/orders/ORD-20260316-99999999", headers=_bearer(platform.token_for("ADV-1207"))
    )

    assert response.status_code == 404
    assert _error(response) == {
        "code": "ORDER_NOT_FOUND",
        "field": "order_id",
        "message": "no order ORD-20260316-99999999",
    }


async def test_malformed_order_id_is_refused_before_the_upstream(platform: Platform) -> None:
    response = await platform.client.get(
        "/v1/orders/not-an-order", headers=_bearer(platform.token_for("ADV-1207"))
    )

    assert response.status_code == 400
    assert _error(response)["field"] == "order_id"


async def test_listing_follows_the_account_assignment(platform: Platform) -> None:
    headers = _bearer(platform.token_for("ADV-1207"))

    own = await platform.client.get(
        "/v1/orders", params={"account_id": "ACC-987654"}, headers=headers
    )
    other = await platform.client.get(
        "/v1/orders", params={"account_id": "ACC-555001"}, headers=headers
    )
    unknown = await platform.client.get(
        "/v1/orders", params={"account": "ACC-987654"}, headers=headers
    )

    assert own.status_code == 200
    assert own.json()["orders"]
    assert {o["order"]["account_id"] for o in own.json()["orders"]} == {"ACC-987654"}
    assert other.status_code == 403
    assert (unknown.status_code, _error(unknown)["field"]) == (400, "account")


async def test_new_assignment_is_picked_up_by_the_refresh(
    platform: Platform, postgres: Any
) -> None:
    headers = _bearer(platform.token_for("ADV-2001"))
    connection = await asyncpg.connect(
        postgres.owner_dsn,
        timeout=10,
        server_settings={"lock_timeout": "5s", "statement_timeout": "10s"},
    )
    try:
        await connection.execute(
            "INSERT INTO advisor_accounts (advisor_id, account_id) "
            "VALUES ('ADV-2001', 'ACC-987655')"
        )
        status = await _status_within(
            platform, "/v1/orders?account_id=ACC-987655", headers, wanted=200
        )
    finally:
        await connection.execute(
            "DELETE FROM advisor_accounts "
            "WHERE advisor_id = 'ADV-2001' AND account_id = 'ACC-987655'"
        )
        await connection.close()

    assert status == 200
    assert (
        await _status_within(platform, "/v1/orders?account_id=ACC-987655", headers, wanted=403)
        == 403
    )


async def _status_within(
    platform: Platform, url: str, headers: dict[str, str], *, wanted: int, timeout_s: float = 5.0
) -> int:
    deadline = time.monotonic() + timeout_s
    while True:
        status = (await platform.client.get(url, headers=headers)).status_code
        if status == wanted or time.monotonic() > deadline:
            return status
        await asyncio.sleep(0.1)


# -- documentation, health and telemetry -----------------------------------------------------


async def test_requests_beyond_the_in_flight_limit_are_shed_before_any_work(
    platform: Platform,
) -> None:
    # Arrange: the gateway's whole allowance waits in the upstream.
    headers = _bearer(platform.token_for("ADV-1207"))
    limit = platform.gateway.app.settings.max_in_flight
    platform.orders.open_for_business.clear()
    waiting = [
        asyncio.ensure_future(
            platform.client.post(
                "/v1/orders", content=_body(client_order_id=f"CO-SHED-{n}"), headers=headers
            )
        )
        for n in range(limit)
    ]
    try:
        for _ in range(200):
            if sum("SHED" in r.client_order_id for r in platform.orders.received) == limit:
                break
            await asyncio.sleep(0.05)

        # Act: one more, with no token at all.
        shed = await platform.client.post("/v1/orders", content=_body(client_order_id="CO-X"))
    finally:
        platform.orders.open_for_business.set()
    served = await asyncio.gather(*waiting)

    # Assert
    assert shed.status_code == 429
    assert _error(shed)["code"] == "OVERLOADED"
    assert shed.headers["retry-after"] == "1"
    assert [r.status_code for r in served] == [201] * limit


async def test_openapi_and_docs_are_served_locally(platform: Platform) -> None:
    spec = await platform.client.get("/openapi.json")
    page = await platform.client.get("/docs")
    script = await platform.client.get("/docs/assets/swagger-ui-bundle.js")

    assert spec.status_code == 200
    assert "/v1/orders/{order_id}" in spec.json()["paths"]
    assert page.status_code == 200
    assert "swagger-ui-bundle.js" in page.text
    assert "http" not in page.text.split("<body>", 1)[1]
    assert script.status_code == 200


async def test_health_is_served_over_http_and_grpc(platform: Platform) -> None:
    response = await platform.client.get("/healthz")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{platform.gateway.grpc_port}") as channel:
        check = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())

    assert response.status_code == 200
    assert response.json()["entitlements_loaded"] is True
    assert check.status == health_pb2.HealthCheckResponse.SERVING


async def test_unknown_path_answers_the_error_envelope(platform: Platform) -> None:
    response = await platform.client.get("/v1/portfolios")

    assert response.status_code == 404
    assert _error(response)["code"] == "NOT_FOUND"


def _prevenue_totals() -> float:
    return (
        REGISTRY.get_sample_value("brokermesh_prevenue_segment_seconds_count", {"segment": "total"})
        or 0.0
    )


@pytest.mark.parametrize(
    ("state", "counted"),
    [
        (order_pb2.ORDER_STATE_ROUTED, True),
        (order_pb2.ORDER_STATE_FILLED, True),
        (order_pb2.ORDER_STATE_BLOCKED, False),
        (order_pb2.ORDER_STATE_REJECTED, False),
    ],
    ids=["routed", "filled", "blocked", "rejected"],
)
async def test_the_prevenue_total_counts_only_new_orders_handed_to_a_venue(
    platform: Platform, state: int, counted: bool
) -> None:
    headers = _bearer(platform.token_for("ADV-1207"))
    body = _body(client_order_id=f"CO-TOTAL-{uuid.uuid4().hex[:8]}")
    platform.orders.new_order_state = state
    try:
        before = _prevenue_totals()
        first = await platform.client.post("/v1/orders", content=body, headers=headers)
        after_first = _prevenue_totals()
        repeated = await platform.client.post("/v1/orders", content=body, headers=headers)
    finally:
        platform.orders.new_order_state = order_pb2.ORDER_STATE_NEW

    assert (first.status_code, repeated.status_code) == (201, 200)
    assert after_first == before + (1 if counted else 0)
    # A repeated client_order_id answers the first order without a second trip to the venue.
    assert _prevenue_totals() == after_first


async def test_requests_are_counted_by_route_template(platform: Platform) -> None:
    headers = _bearer(platform.token_for("ADV-1207"))
    labels = {"route": "/v1/orders/{order_id}", "status": "403"}
    before = REGISTRY.get_sample_value("brokermesh_http_requests_total", labels) or 0.0
    segments = (
        REGISTRY.get_sample_value(
            "brokermesh_prevenue_segment_seconds_count", {"segment": "gateway_auth"}
        )
        or 0.0
    )

    await platform.client.get(f"/v1/orders/{OTHER_ADVISORS_ORDER}", headers=headers)

    assert REGISTRY.get_sample_value("brokermesh_http_requests_total", labels) == before + 1
    assert (
        REGISTRY.get_sample_value(
            "brokermesh_prevenue_segment_seconds_count", {"segment": "gateway_auth"}
        )
        == segments + 1
    )
    duration = REGISTRY.get_sample_value(
        "brokermesh_http_request_duration_seconds_count", {"route": "/v1/orders/{order_id}"}
    )
    assert duration is not None and duration > 0
