"""Bare baselines on the same machine: the gRPC echo chain, a durable asyncpg insert and a
JetStream publish, each driven open loop like the platform."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import grpc
import nats

from loadtests.echo_chain import CALL, STATS, start_chain
from loadtests.openloop import Operation

PAYLOAD = json.dumps(
    {
        "account_id": "ACC-987654",
        "symbol": "AAPL",
        "side": "BUY",
        "quantity": 10,
        "order_type": "LIMIT",
        "limit_price": "189.50",
        "time_in_force": "DAY",
        "advisor_id": "ADV-1207",
        "client_order_id": "x" * 40,
        "pad": "p" * 200,
    }
)
SCRATCH_TABLE = "bench_scratch_insert"
SCRATCH_STREAM = "BENCH_SCRATCH"


def _ident(data: bytes) -> bytes:
    return data


@asynccontextmanager
async def echo_chain(base_port: int) -> AsyncIterator[tuple[Operation, Any, list[int]]]:
    """The running echo chain: (operation, stats fetcher, server pids)."""
    ports, procs = start_chain(base_port)
    channels = {n: grpc.aio.insecure_channel(f"127.0.0.1:{p}") for n, p in ports.items()}
    call = channels["edge"].unary_unary(CALL, _ident, _ident)
    payload = PAYLOAD.encode()

    async def op(_: int) -> bool:
        await call(payload, timeout=10)
        return True

    async def stats() -> dict[str, Any]:
        out = {}
        for name, channel in channels.items():
            raw = await channel.unary_unary(STATS, _ident, _ident)(b"", timeout=10)
            out[name] = json.loads(raw)
        return out

    try:
        yield op, stats, [p.pid for p in procs]
    finally:
        for channel in channels.values():
            await channel.close()
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=10)


@asynccontextmanager
async def pg_insert(dsn: str) -> AsyncIterator[tuple[Operation, dict[str, str]]]:
    """Inserts into a scratch table with synchronous_commit on; yields (op, settings)."""
    pool = await asyncpg.create_pool(
        dsn, min_size=8, max_size=16, server_settings={"synchronous_commit": "on"}
    )
    async with pool.acquire() as conn:
        await conn.execute(f"DROP TABLE IF EXISTS {SCRATCH_TABLE}")
        await conn.execute(
            f"CREATE TABLE {SCRATCH_TABLE} (id bigserial PRIMARY KEY, "
            "payload jsonb NOT NULL, created_at timestamptz DEFAULT now())"
        )
        settings = {
            k: await conn.fetchval(f"SHOW {k}")
            for k in ("fsync", "synchronous_commit", "wal_sync_method", "full_page_writes")
        }

    async def op(_: int) -> bool:
        await pool.execute(f"INSERT INTO {SCRATCH_TABLE} (payload) VALUES ($1)", PAYLOAD)
        return True

    try:
        yield op, settings
    finally:
        async with pool.acquire() as conn:
            await conn.execute(f"DROP TABLE IF EXISTS {SCRATCH_TABLE}")
        await pool.close()


@asynccontextmanager
async def js_publish(url: str) -> AsyncIterator[Operation]:
    """Publishes to a scratch file-storage stream (the server syncs every write)."""
    conn = await nats.connect(url)
    js = conn.jetstream()
    await js.add_stream(name=SCRATCH_STREAM, subjects=["benchscratch.>"], storage="file")
    payload = PAYLOAD.encode()
    subject = f"benchscratch.{os.getpid()}"

    async def op(_: int) -> bool:
        await js.publish(subject, payload, timeout=10)
        return True

    try:
        yield op
    finally:
        await js.delete_stream(SCRATCH_STREAM)
        await conn.close()
