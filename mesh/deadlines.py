"""The request's deadline budget, so every downstream call spends what is left of it."""

from __future__ import annotations

import contextvars
import time

#: Monotonic time (``time.monotonic()``) by which the current request must be answered.
deadline_var: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "deadline", default=None
)


def remaining_s() -> float | None:
    """Seconds left in the current request's budget, or None outside a request."""
    deadline = deadline_var.get()
    if deadline is None:
        return None
    return max(0.0, deadline - time.monotonic())


def downstream_timeout_s(ceiling_s: float) -> float:
    """Timeout for a downstream call: the ceiling, cut to what the request has left."""
    left = remaining_s()
    return ceiling_s if left is None else min(ceiling_s, left)
