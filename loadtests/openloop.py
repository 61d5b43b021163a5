"""An open-loop load generator: operations start on a fixed schedule, whatever the
responses do, and latency is measured from the scheduled start (no coordinated omission)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import psutil

Operation = Callable[[int], Awaitable[bool]]


@dataclass(slots=True)
class LoopResult:
    """What one open-loop phase measured; latencies (of successful operations) in seconds."""

    rate: float
    sent: int = 0
    ok: int = 0
    latencies: list[float] = field(default_factory=list)
    max_lag: float = 0.0
    wall_s: float = 0.0
    client_cpu_s: float = 0.0

    @property
    def throughput(self) -> float:
        return self.ok / self.wall_s if self.wall_s > 0 else 0.0


async def _timed(op: Operation, i: int, scheduled: float, result: LoopResult) -> None:
    try:
        ok = await op(i)
    except Exception:
        ok = False
    # Only answered orders count: a shed request (429) answers fast and would flatter the
    # latency of the ones served; the refused ones show as errors instead.
    if ok:
        result.latencies.append(time.perf_counter() - scheduled)
    result.ok += ok


async def open_loop(rate: float, duration_s: float, op: Operation) -> LoopResult:
    """Start ``op(i)`` at ``rate`` per second for ``duration_s``; wait for all to finish."""
    result = LoopResult(rate)
    me = psutil.Process()
    cpu0 = sum(me.cpu_times()[:2])
    total = int(rate * duration_s)
    start = time.perf_counter()
    tasks = []
    for i in range(total):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        result.max_lag = max(result.max_lag, -delay)
        tasks.append(asyncio.create_task(_timed(op, i, scheduled, result)))
    await asyncio.gather(*tasks)
    result.wall_s = time.perf_counter() - start
    result.sent = total
    result.client_cpu_s = sum(me.cpu_times()[:2]) - cpu0
    return result
