"""The order lifecycle's transition table: every legal move passes, every other is refused."""

from __future__ import annotations

import itertools

import grpc
import pytest

from brokermesh.domain import states
from brokermesh.domain.states import (
    BLOCKED,
    CANCELLED,
    FILLED,
    NEW,
    PARTIALLY_FILLED,
    REJECTED,
    RISK_APPROVED,
    ROUTED,
    UNSPECIFIED,
    VALIDATED,
)

#: The lifecycle as the blueprint draws it, written out by hand so the table is checked
#: against it rather than against itself.
LEGAL = [
    (UNSPECIFIED, NEW),
    (NEW, VALIDATED),
    (NEW, REJECTED),
    (VALIDATED, RISK_APPROVED),
    (VALIDATED, BLOCKED),
    (RISK_APPROVED, ROUTED),
    (RISK_APPROVED, BLOCKED),
    (RISK_APPROVED, REJECTED),
    (ROUTED, PARTIALLY_FILLED),
    (ROUTED, FILLED),
    (ROUTED, REJECTED),
    (ROUTED, CANCELLED),
    (PARTIALLY_FILLED, PARTIALLY_FILLED),
    (PARTIALLY_FILLED, FILLED),
    (PARTIALLY_FILLED, CANCELLED),
]
ALL_STATES = list(states.TRANSITIONS)


def _move_id(move: tuple[int, int]) -> str:
    return f"{states.name(move[0])}->{states.name(move[1])}"


@pytest.mark.parametrize("move", LEGAL, ids=_move_id)
def test_a_legal_move_passes(move: tuple[int, int]) -> None:
    states.check("ORD-1", *move)


@pytest.mark.parametrize(
    "move",
    [
        (FILLED, NEW),
        (FILLED, PARTIALLY_FILLED),
        (NEW, FILLED),
        (NEW, ROUTED),
        (VALIDATED, ROUTED),
        (BLOCKED, RISK_APPROVED),
        (REJECTED, NEW),
        (CANCELLED, FILLED),
        (ROUTED, ROUTED),
        (UNSPECIFIED, VALIDATED),
        (NEW, NEW),
    ],
    ids=_move_id,
)
def test_an_illegal_move_is_refused_naming_the_order_and_both_states(
    move: tuple[int, int],
) -> None:
    with pytest.raises(states.IllegalTransition) as caught:
        states.check("ORD-20260316-00000001", *move)

    error = caught.value
    assert (error.order_id, error.current, error.target) == ("ORD-20260316-00000001", *move)
    assert f"{_move_id(move).replace('->', ' -> ')} is not a legal" in error.message
    assert error.code == "ILLEGAL_TRANSITION"


def test_every_move_outside_the_lifecycle_is_refused() -> None:
    refused = set()
    for move in itertools.product(ALL_STATES, repeat=2):
        try:
            states.check("ORD-1", *move)
        except states.IllegalTransition:
            refused.add(move)

    assert refused == set(itertools.product(ALL_STATES, repeat=2)) - set(LEGAL)


def test_the_table_covers_every_order_state_of_the_contract() -> None:
    assert sorted(ALL_STATES) == sorted(states.OrderState.values())


def test_terminal_states_are_filled_blocked_rejected_and_cancelled() -> None:
    assert states.TERMINAL == {FILLED, BLOCKED, REJECTED, CANCELLED}


def test_an_illegal_move_becomes_failed_precondition_at_the_service_edge() -> None:
    assert states.IllegalTransition.status == grpc.StatusCode.FAILED_PRECONDITION


def test_state_names_drop_the_enum_prefix() -> None:
    assert [states.name(s) for s in (NEW, RISK_APPROVED)] == ["NEW", "RISK_APPROVED"]
