"""The order lifecycle: one transition table, and a loud refusal of any other move."""

from __future__ import annotations

from brokermesh.mesh.errors import FailedPrecondition
from brokermesh.trading.v1.order_pb2 import OrderState

NEW = OrderState.ORDER_STATE_NEW
VALIDATED = OrderState.ORDER_STATE_VALIDATED
RISK_APPROVED = OrderState.ORDER_STATE_RISK_APPROVED
BLOCKED = OrderState.ORDER_STATE_BLOCKED
ROUTED = OrderState.ORDER_STATE_ROUTED
PARTIALLY_FILLED = OrderState.ORDER_STATE_PARTIALLY_FILLED
FILLED = OrderState.ORDER_STATE_FILLED
REJECTED = OrderState.ORDER_STATE_REJECTED
CANCELLED = OrderState.ORDER_STATE_CANCELLED
UNSPECIFIED = OrderState.ORDER_STATE_UNSPECIFIED

#: Every legal move. UNSPECIFIED stands for "no order yet". A platform
#: refusal before validation (trading halted) is NEW -> REJECTED; no venue
#: able to take an approved order is RISK_APPROVED -> REJECTED; a venue
#: refusal is ROUTED -> REJECTED; a venue cancelling the unfilled rest (IOC,
#: end of day) is ROUTED/PARTIALLY_FILLED -> CANCELLED.
TRANSITIONS: dict[int, frozenset[int]] = {
    UNSPECIFIED: frozenset({NEW}),
    NEW: frozenset({VALIDATED, REJECTED}),
    VALIDATED: frozenset({RISK_APPROVED, BLOCKED}),
    RISK_APPROVED: frozenset({ROUTED, BLOCKED, REJECTED}),
    ROUTED: frozenset({PARTIALLY_FILLED, FILLED, REJECTED, CANCELLED}),
    PARTIALLY_FILLED: frozenset({PARTIALLY_FILLED, FILLED, CANCELLED}),
    FILLED: frozenset(),
    BLOCKED: frozenset(),
    REJECTED: frozenset(),
    CANCELLED: frozenset(),
}

TERMINAL = frozenset(state for state, targets in TRANSITIONS.items() if not targets)


class IllegalTransition(FailedPrecondition):
    """A move the transition table does not allow."""

    def __init__(self, order_id: str, current: int, target: int) -> None:
        super().__init__(
            f"order {order_id}: {name(current)} -> {name(target)} is not a legal transition",
            code="ILLEGAL_TRANSITION",
        )
        self.order_id = order_id
        self.current = current
        self.target = target


def check(order_id: str, current: int, target: int) -> None:
    """Raise :class:`IllegalTransition` unless ``current -> target`` is in the table."""
    if target not in TRANSITIONS[current]:
        raise IllegalTransition(order_id, current, target)


def name(state: int) -> str:
    """Short name of a state, as the API shows it (``FILLED``)."""
    return OrderState.Name(state).removeprefix("ORDER_STATE_")
