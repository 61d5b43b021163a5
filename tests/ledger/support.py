"""Builders for the ledger tests: orders, their event streams, and reading JetStream back."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.client import JetStreamContext

from brokermesh.common.v1.common_pb2 import (
    Actor,
    ActorType,
    DecisionResult,
    OrderType,
    PolicyDecision,
    Side,
    TimeInForce,
)
from brokermesh.domain import events as domain_events
from brokermesh.domain import eventstore, states
from brokermesh.events.v1.order_events_pb2 import OrderEvent
from brokermesh.services.ledger import relay, subjects
from brokermesh.trading.v1.order_pb2 import Fill, Order

#: A fully filled order, in two executions, with a risk approval on the way.
FILLED_PATH = (
    states.NEW,
    states.VALIDATED,
    states.RISK_APPROVED,
    states.ROUTED,
    states.PARTIALLY_FILLED,
    states.FILLED,
)
BLOCKED_PATH = (states.NEW, states.VALIDATED, states.BLOCKED)
REJECTED_PATH = (states.NEW, states.REJECTED)
CANCELLED_PATH = (
    states.NEW,
    states.VALIDATED,
    states.RISK_APPROVED,
    states.ROUTED,
    states.PARTIALLY_FILLED,
    states.CANCELLED,
)

_QUANTITY = 100
_PRICES = ("189.50", "189.40")
_SYSTEM = Actor(type=ActorType.ACTOR_TYPE_SYSTEM, id="oms")


def new_order(*, account_id: str = "ACC-LEDGER", accepted_at: datetime | None = None) -> Order:
    """A limit order with fresh random order and trace ids."""
    order = Order(
        order_id=f"ORD-20260316-{secrets.randbelow(10**8):08d}",
        client_order_id=f"C-{secrets.token_hex(6)}",
        account_id=account_id,
        advisor_id="ADV-1207",
        symbol="AAPL",
        side=Side.SIDE_BUY,
        quantity=_QUANTITY,
        order_type=OrderType.ORDER_TYPE_LIMIT,
        limit_price="189.50",
        time_in_force=TimeInForce.TIME_IN_FORCE_DAY,
        trace_id=secrets.token_hex(16),
    )
    order.accepted_at.FromDatetime(accepted_at or datetime.now(UTC))
    return order


def lifecycle(order: Order, path: Sequence[int], *, first_version: int = 1) -> list[OrderEvent]:
    """The events moving ``order`` along ``path``, details filled as each service would."""
    at = order.accepted_at.ToDatetime(tzinfo=UTC)
    built: list[OrderEvent] = []
    filled = 0
    for offset, state in enumerate(path):
        version = first_version + offset
        decisions = _decisions(state)
        event = domain_events.new_event(
            order,
            state,
            version=version,
            actor=_SYSTEM,
            decisions=decisions,
            at=at + timedelta(milliseconds=offset),
        )
        if state in (states.PARTIALLY_FILLED, states.FILLED):
            filled = _fill(event, filled, exec_no=offset, at=at + timedelta(milliseconds=offset))
        else:
            _detail(event, order, state)
        built.append(event)
    return built


async def append_order(
    conn: asyncpg.Connection, order: Order, path: Sequence[int] = FILLED_PATH
) -> list[OrderEvent]:
    """Append ``order``'s whole lifecycle as one new stream in its own transaction."""
    built = lifecycle(order, path)
    async with conn.transaction():
        await eventstore.append(conn, eventstore.StreamHead(), built)
    return built


async def drain(conn: asyncpg.Connection, js: JetStreamContext) -> int:
    """Run relay passes until the outbox is empty; returns rows published."""
    total = 0
    while True:
        result = await relay.publish_pending(conn, js, limit=256)
        assert not result.stalled, "a publication failed while draining"
        assert not result.held, f"orders held back: {result.held}"
        total += result.published
        if result.read == 0:
            return total


async def as_owner(owner_dsn: str, *statements: tuple[str, tuple[Any, ...]]) -> None:
    """Run ``statements`` as the owner with the append-only trigger off, as a forger would."""
    owner = await asyncpg.connect(owner_dsn)
    try:
        await owner.execute("ALTER TABLE order_events DISABLE TRIGGER order_events_append_only")
        try:
            for sql, params in statements:
                await owner.execute(sql, *params)
        finally:
            await owner.execute("ALTER TABLE order_events ENABLE TRIGGER order_events_append_only")
    finally:
        await owner.close()


async def next_sequence(js: JetStreamContext) -> int:
    """The sequence the ORDERS stream gives its next message."""
    info = await js.stream_info(subjects.STREAM)
    return info.state.last_seq + 1


async def read_messages(
    js: JetStreamContext,
    subject: str,
    start_seq: int,
    order_ids: set[str],
    count: int,
    *,
    timeout_s: float = 10.0,
) -> list[Msg]:
    """The first ``count`` messages on ``subject`` from ``start_seq`` about ``order_ids``,
    in stream order; other tests' orders are skipped."""
    config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start_seq)
    sub = await js.subscribe(subject, ordered_consumer=True, config=config)
    found: list[Msg] = []
    try:
        async with asyncio.timeout(timeout_s):
            while len(found) < count:
                msg = await sub.next_msg(timeout=timeout_s)
                if (msg.headers or {}).get(subjects.ORDER_ID) in order_ids:
                    found.append(msg)
    finally:
        await sub.unsubscribe()
    return found


def _decisions(state: int) -> list[PolicyDecision]:
    if state == states.RISK_APPROVED:
        return [
            PolicyDecision(
                policy="buying_power",
                result=DecisionResult.DECISION_RESULT_PASS,
                reason="enough cash",
            ),
            PolicyDecision(
                policy="restricted_list",
                result=DecisionResult.DECISION_RESULT_PASS,
                reason="not listed",
            ),
        ]
    if state == states.BLOCKED:
        return [
            PolicyDecision(
                policy="max_notional",
                result=DecisionResult.DECISION_RESULT_FAIL,
                reason="notional above the account limit",
            )
        ]
    return []


def _detail(event: OrderEvent, order: Order, state: int) -> None:
    if state == states.NEW:
        event.accepted.client_order_id = order.client_order_id
        event.accepted.advisor_id = order.advisor_id
        event.accepted.time_in_force = order.time_in_force
    elif state == states.VALIDATED:
        event.validated.SetInParent()
    elif state == states.RISK_APPROVED:
        event.risk_approved.SetInParent()
    elif state == states.BLOCKED:
        event.blocked.reason = "max_notional"
    elif state == states.ROUTED:
        event.routed.venue = "SIMX"
        event.routed.reason = "best price"
    elif state == states.REJECTED:
        event.rejected.reason = "trading halted"
    elif state == states.CANCELLED:
        event.cancelled.reason = "IOC remainder"
        event.cancelled.cancelled_quantity = _QUANTITY // 2


def _fill(event: OrderEvent, filled_before: int, *, exec_no: int, at: datetime) -> int:
    """Fill half the order; returns the cumulative quantity after this execution."""
    quantity = _QUANTITY // 2
    price = _PRICES[min(filled_before // quantity, len(_PRICES) - 1)]
    fill = Fill(
        exec_id=f"E-{event.order_id}-{exec_no}", venue="SIMX", quantity=quantity, price=price
    )
    fill.executed_at.FromDatetime(at)
    cumulative = filled_before + quantity
    event.filled.fill.CopyFrom(fill)
    event.filled.cumulative_quantity = cumulative
    event.filled.leaves_quantity = _QUANTITY - cumulative
    event.filled.average_price = str(
        domain_events.average_price(
            [(quantity, Decimal(p)) for p in _PRICES[: cumulative // quantity]]
        )
    )
    return cumulative
