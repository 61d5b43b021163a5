"""OrderQueryService: answers order queries from the ``order_views`` read model."""

from __future__ import annotations

import asyncpg
import grpc

from brokermesh.mesh.deadlines import downstream_timeout_s
from brokermesh.mesh.errors import NotFound
from brokermesh.trading.v1 import order_query_pb2_grpc
from brokermesh.trading.v1.order_query_pb2 import (
    GetOrderRequest,
    GetOrderResponse,
    ListOrdersRequest,
    ListOrdersResponse,
    OrderView,
)

#: Orders returned by ListOrders when the caller sets no page size.
DEFAULT_PAGE_SIZE = 50
#: Longest a single read-model query may take, whatever the caller's deadline.
QUERY_TIMEOUT_S = 2.0

_GET = "SELECT view FROM order_views WHERE order_id = $1"

# accepted_at then order_id: a total order, so equal timestamps page the same way every time.
_LIST = """
SELECT view FROM order_views WHERE account_id = $1
ORDER BY accepted_at DESC, order_id DESC
LIMIT $2
"""


class OrderQueryService(order_query_pb2_grpc.OrderQueryServiceServicer):
    """Reads order views; never writes. Requests are validated by the server pipeline."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def GetOrder(
        self, request: GetOrderRequest, context: grpc.aio.ServicerContext
    ) -> GetOrderResponse:
        """One order's view; NOT_FOUND naming the order when there is none."""
        view = await self._pool.fetchval(_GET, request.order_id, timeout=_timeout_s())
        if view is None:
            raise NotFound(
                f"order {request.order_id} not found", field="order_id", code="ORDER_NOT_FOUND"
            )
        return GetOrderResponse(order=OrderView.FromString(bytes(view)))

    async def ListOrders(
        self, request: ListOrdersRequest, context: grpc.aio.ServicerContext
    ) -> ListOrdersResponse:
        """An account's orders, newest accepted first, at most ``page_size`` (50 when unset)."""
        limit = request.page_size or DEFAULT_PAGE_SIZE
        rows = await self._pool.fetch(_LIST, request.account_id, limit, timeout=_timeout_s())
        return ListOrdersResponse(orders=[OrderView.FromString(bytes(row["view"])) for row in rows])


def _timeout_s() -> float:
    # The pipeline enforces the caller's deadline; this keeps a stuck query from holding
    # a pooled connection past it.
    return max(downstream_timeout_s(QUERY_TIMEOUT_S), 0.001)
