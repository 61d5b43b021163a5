"""Stopping background tasks: only the stopped task's cancellation is absorbed."""

from __future__ import annotations

import asyncio

import pytest

from brokermesh.mesh.tasks import cancel_and_wait

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(10)]


async def _slow_to_stop(cleanup_s: float, cleaned: asyncio.Event) -> None:
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        await asyncio.sleep(cleanup_s)
        cleaned.set()
        raise


async def test_the_tasks_own_cancellation_is_absorbed() -> None:
    task = asyncio.create_task(asyncio.Event().wait())
    await asyncio.sleep(0)

    await cancel_and_wait(task)

    assert task.cancelled()


async def test_it_waits_until_the_task_has_cleaned_up() -> None:
    cleaned = asyncio.Event()
    task = asyncio.create_task(_slow_to_stop(0.1, cleaned))
    await asyncio.sleep(0)

    await cancel_and_wait(task)

    assert cleaned.is_set()
    assert task.done()


async def test_a_caller_cancelled_while_waiting_is_cancelled_too() -> None:
    cleaned = asyncio.Event()
    task = asyncio.create_task(_slow_to_stop(0.5, cleaned))
    await asyncio.sleep(0)
    stopping = asyncio.create_task(cancel_and_wait(task))
    await asyncio.sleep(0.05)

    stopping.cancel()

    with pytest.raises(asyncio.CancelledError):
        await stopping
    assert stopping.cancelled()
    await asyncio.wait((task,))


async def test_an_error_the_task_ends_with_is_raised() -> None:
    async def failing_cleanup() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise RuntimeError("could not flush") from None

    task = asyncio.create_task(failing_cleanup())
    await asyncio.sleep(0)

    with pytest.raises(RuntimeError, match="could not flush"):
        await cancel_and_wait(task)


async def test_a_task_that_already_finished_is_left_as_it_ended() -> None:
    task = asyncio.create_task(asyncio.sleep(0, result="done"))
    await task

    await cancel_and_wait(task)

    assert task.result() == "done"
