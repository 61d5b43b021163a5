"""The reconciler: finds routed orders their venue never acknowledged and asks the venue.

An order can sit ROUTED with nothing on its way back: order entry stopped between recording
ROUTED and handing the order over, the hand-off failed without saying whether the order got
through, or the FIX link dropped as the order went out. Every ``interval_s`` the reconciler
looks for orders routed more than ``after_s`` ago that have reached no final state and that
their venue has not shown it holds (no acknowledgement, fill or status answer recorded), and
has the venue gateway send the venue an OrderStatusRequest for each. The venue's answer comes
back as an execution report like any other: the order's status, which trade capture applies,
or the rejection of an order the venue does not know, which makes the order REJECTED.

An order is asked about again every ``after_s`` until an answer is recorded. Asking is
idempotent, so two reconcilers (two trade capture replicas) only ask twice.
"""

from __future__ import annotations

import asyncio
import logging
import time

import asyncpg
import grpc
from prometheus_client import Counter

from brokermesh.domain import events as order_events
from brokermesh.domain import states
from brokermesh.events.v1.order_events_pb2 import OrderEvent
from brokermesh.trading.v1 import venue_pb2, venue_pb2_grpc

_LOGGER = logging.getLogger(__name__)

STATUS_QUERIES = Counter(
    "brokermesh_reconciler_status_queries",
    "Order status requests the reconciler had sent, by venue and outcome.",
    ["venue", "outcome"],
)

#: Events after which an order needs no reconciling.
FINAL_EVENT_TYPES = sorted(
    order_events.EVENT_TYPES[state][0]
    for state in (states.FILLED, states.REJECTED, states.CANCELLED)
)

# The event type is spelt out, not a parameter, so that the planner can use the partial
# index order_events_routed_at.
_FIND_UNACKNOWLEDGED = """
SELECT r.stream_id AS order_id, r.payload,
       extract(epoch FROM now() - r.recorded_at)::float8 AS age_s
FROM order_events r
WHERE r.event_type = 'OrderRouted'
  AND r.recorded_at > now() - make_interval(secs => $2)
  AND r.recorded_at < now() - make_interval(secs => $1)
  AND NOT EXISTS (SELECT FROM venue_acknowledgements a WHERE a.order_id = r.stream_id)
  AND NOT EXISTS (
      SELECT FROM order_events f
      WHERE f.stream_id = r.stream_id
        AND f.stream_version > r.stream_version
        AND f.event_type = ANY($4::text[])
  )
ORDER BY r.recorded_at
LIMIT $3
"""


class Reconciler:
    """Asks venues about the orders they never acknowledged; :meth:`run` is its task."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        venue_gateway: venue_pb2_grpc.VenueGatewayServiceStub,
        *,
        after_s: float = 5.0,
        interval_s: float = 1.0,
        lookback_s: float = 7 * 24 * 3600.0,
        batch_size: int = 200,
        call_timeout_s: float = 1.0,
        query_timeout_s: float = 10.0,
    ) -> None:
        self._pool = pool
        self._venue_gateway = venue_gateway
        self._after_s = after_s
        self._interval_s = interval_s
        self._lookback_s = lookback_s
        self._batch_size = batch_size
        self._call_timeout_s = call_timeout_s
        self._query_timeout_s = query_timeout_s
        self._asked: dict[str, float] = {}
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        """Reconcile every ``interval_s`` until :meth:`stop`; each pass is bounded in time."""
        while not self._stopping.is_set():
            try:
                await self.reconcile_once()
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
                _LOGGER.warning("reconciliation pass failed; trying again", exc_info=True)
            except Exception:
                # A reconciler that died would leave orders ROUTED unnoticed again.
                _LOGGER.exception("reconciliation pass failed unexpectedly; trying again")
            try:
                async with asyncio.timeout(self._interval_s):
                    await self._stopping.wait()
            except TimeoutError:
                continue

    def stop(self) -> None:
        """Make :meth:`run` return after the pass in progress, if any."""
        self._stopping.set()

    async def reconcile_once(self) -> list[str]:
        """One pass: ask about every overdue order not asked about lately; their ids."""
        rows = await self._pool.fetch(
            _FIND_UNACKNOWLEDGED,
            self._after_s,
            self._lookback_s,
            self._batch_size,
            FINAL_EVENT_TYPES,
            timeout=self._query_timeout_s,
        )
        now = time.monotonic()
        self._asked = {k: at for k, at in self._asked.items() if now - at < self._after_s}
        asked: list[str] = []
        for row in rows:
            order_id = row["order_id"]
            if order_id in self._asked:
                continue
            self._asked[order_id] = now
            if await self._ask(OrderEvent.FromString(row["payload"]), row["age_s"]):
                asked.append(order_id)
        return asked

    async def _ask(self, routed: OrderEvent, age_s: float) -> bool:
        venue = routed.routed.venue
        request = venue_pb2.QueryOrderStatusRequest(
            order_id=routed.order_id, venue=venue, symbol=routed.symbol, side=routed.side
        )
        extra = {"order_id": routed.order_id, "venue": venue}
        try:
            await self._venue_gateway.QueryOrderStatus(request, timeout=self._call_timeout_s)
        except grpc.aio.AioRpcError as exc:
            STATUS_QUERIES.labels(venue, exc.code().name).inc()
            _LOGGER.warning(
                "order %s routed to %s %.1f s ago is unacknowledged and its status cannot be "
                "asked now: %s",
                routed.order_id,
                venue,
                age_s,
                exc.details(),
                extra=extra,
            )
            return False
        STATUS_QUERIES.labels(venue, "SENT").inc()
        _LOGGER.warning(
            "order %s routed to %s %.1f s ago is unacknowledged; asked the venue for its status",
            routed.order_id,
            venue,
            age_s,
            extra=extra,
        )
        return True
