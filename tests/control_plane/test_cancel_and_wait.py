"""cancel_and_wait, with which the watcher stops its task: only that task's cancellation is
swallowed, never the caller's own."""

from __future__ import annotations

import asyncio

import pytest

from brokermesh.mesh.controls import cancel_and_wait

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(30)]


async def _slow_to_stop(cleanup_s: float) -> None:
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        await asyncio.sleep(cleanup_s)
        raise


async def test_cancelled_task_is_awaited_and_its_cancellation_swallowed() -> None:
    task = asyncio.create_task(_slow_to_stop(0.05))
    await asyncio.sleep(0)

    await cancel_and_wait(task)

    assert task.cancelled()


async def test_callers_own_cancellation_while_waiting_propagates() -> None:
    # Arrange: the caller is waiting for a task that takes its time to clean up.
    task = asyncio.create_task(_slow_to_stop(5.0))
    await asyncio.sleep(0)
    caller = asyncio.create_task(cancel_and_wait(task))
    await asyncio.sleep(0.05)

    # Act
    caller.cancel()

    # Assert
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert caller.cancelled()
    assert task.cancelled()


async def test_failure_of_the_task_while_stopping_is_raised() -> None:
    async def fails_on_cancel() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            raise RuntimeError("cleanup failed") from None

    task = asyncio.create_task(fails_on_cancel())
    await asyncio.sleep(0)

    with pytest.raises(RuntimeError, match="cleanup failed"):
        await cancel_and_wait(task)
