"""The request budget: what is left of it, and the timeout a downstream call gets."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from brokermesh.mesh import deadlines


@pytest.fixture
def budget() -> Iterator[Callable[[float], None]]:
    """Sets the current request's deadline ``s`` seconds from now; restored afterwards."""
    tokens = []

    def set_budget(seconds: float) -> None:
        tokens.append(deadlines.deadline_var.set(time.monotonic() + seconds))

    yield set_budget
    for token in reversed(tokens):
        deadlines.deadline_var.reset(token)


def test_outside_a_request_there_is_no_budget() -> None:
    assert deadlines.remaining_s() is None


def test_remaining_counts_down_to_the_deadline(budget: Callable[[float], None]) -> None:
    budget(5.0)

    remaining = deadlines.remaining_s()

    assert remaining is not None
    assert 4.5 < remaining <= 5.0


def test_a_spent_budget_is_zero_not_negative(budget: Callable[[float], None]) -> None:
    budget(-3.0)

    assert deadlines.remaining_s() == 0.0


def test_outside_a_request_a_downstream_call_gets_the_whole_ceiling() -> None:
    assert deadlines.downstream_timeout_s(1.5) == 1.5


@pytest.mark.parametrize(
    ("left_s", "ceiling_s", "low", "high"),
    [(0.2, 1.0, 0.1, 0.2), (10.0, 1.0, 1.0, 1.0), (-1.0, 1.0, 0.0, 0.0)],
    ids=["budget-shorter", "ceiling-shorter", "budget-spent"],
)
def test_a_downstream_call_gets_the_shorter_of_ceiling_and_budget(
    budget: Callable[[float], None], left_s: float, ceiling_s: float, low: float, high: float
) -> None:
    budget(left_s)

    assert low <= deadlines.downstream_timeout_s(ceiling_s) <= high
