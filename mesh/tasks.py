"""Stopping background tasks without swallowing anybody else's cancellation."""

from __future__ import annotations

import asyncio
from typing import Any


async def cancel_and_wait(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` and wait until it has finished.

    Only the task's own cancellation is absorbed. If the caller is cancelled
    while it waits, the caller's ``CancelledError`` propagates (the task has
    been asked to stop and finishes on its own); if the task ended with an
    exception instead, that exception is raised here. Calling it for a task
    that is already done just reports how the task ended.
    """
    task.cancel()
    # asyncio.wait neither raises the task's outcome nor cancels the task when
    # the caller is cancelled, so the two cancellations cannot be confused.
    await asyncio.wait((task,))
    if task.cancelled():
        return
    error = task.exception()
    if error is not None:
        raise error
