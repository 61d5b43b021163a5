"""Bare grpc.aio echo servers shaped like the pre-venue path, for the baseline.

Topology (one process per server, all on loopback; six RPC hops per request, as ours):
client -> edge (as gateway) -> entry (as order-entry) -> oms, risk, router (at once, as
order entry asks them) -> venue (as venue-gateway). Every server echoes raw bytes (no
protobuf work) and records its handling time; ``entry`` also records the round trip of
each child call. The ``/echo.Echo/Stats`` method returns (and clears) those samples as JSON.

Run one server: python -m loadtests.echo_chain --port P --children ADDR[,ADDR...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import grpc

CALL = "/echo.Echo/Call"
STATS = "/echo.Echo/Stats"
LEAVES = ("oms", "risk", "router", "venue")
#: How many of entry's leaves it calls at once before the rest in turn: order entry asks
#: OMS, risk and the router together, then hands the order to the venue gateway.
CONCURRENT_LEAVES = 3


def _identity(data: bytes) -> bytes:
    return data


class EchoServer:
    """Handles Call by calling its first ``concurrent`` children at once, the others in turn,
    then echoing the request."""

    def __init__(self, children: list[str], concurrent: int = 0) -> None:
        self._children = children
        self._concurrent = concurrent
        self._channels = [grpc.aio.insecure_channel(a) for a in children]
        self._calls = [ch.unary_unary(CALL, _identity, _identity) for ch in self._channels]
        self.handling: list[float] = []
        self.child_rtt: dict[str, list[float]] = {a: [] for a in children}

    async def call(self, request: bytes, context: Any) -> bytes:
        started = time.perf_counter()
        pairs = list(zip(self._children, self._calls, strict=True))
        together, in_turn = pairs[: self._concurrent], pairs[self._concurrent :]
        if together:
            await asyncio.gather(*(self._timed(a, c, request) for a, c in together))
        for address, call in in_turn:
            await self._timed(address, call, request)
        self.handling.append(time.perf_counter() - started)
        return request

    async def _timed(self, address: str, call: Any, request: bytes) -> None:
        child_started = time.perf_counter()
        await call(request, timeout=10)
        self.child_rtt[address].append(time.perf_counter() - child_started)

    async def stats(self, request: bytes, context: Any) -> bytes:
        out = json.dumps({"handling": self.handling, "child_rtt": self.child_rtt}).encode()
        self.handling = []
        self.child_rtt = {a: [] for a in self._children}
        return out


def _handler(fn: Callable[..., Any]) -> grpc.RpcMethodHandler:
    return grpc.unary_unary_rpc_method_handler(fn, _identity, _identity)


async def serve(port: int, children: list[str], concurrent: int) -> None:
    echo = EchoServer(children, concurrent)
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "echo.Echo", {"Call": _handler(echo.call), "Stats": _handler(echo.stats)}
            )
        ]
    )
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print("ready", flush=True)
    await server.wait_for_termination()


def chain_ports(base: int) -> dict[str, int]:
    """Ports of the six servers: edge, entry, then the four leaves."""
    names = ("edge", "entry", *LEAVES)
    return {name: base + i for i, name in enumerate(names)}


def start_chain(base_port: int) -> tuple[dict[str, int], list[subprocess.Popen[bytes]]]:
    """Start the six echo processes (leaves first); return their ports and processes."""
    ports = chain_ports(base_port)
    addr = {name: f"127.0.0.1:{port}" for name, port in ports.items()}
    plan: list[tuple[str, list[str], int]] = [(name, [], 0) for name in LEAVES]
    plan += [
        ("entry", [addr[n] for n in LEAVES], CONCURRENT_LEAVES),
        ("edge", [addr["entry"]], 0),
    ]
    procs = []
    for name, children, concurrent in plan:
        cmd = [sys.executable, "-m", "loadtests.echo_chain", "--port", str(ports[name])]
        if children:
            cmd += ["--children", ",".join(children), "--concurrent", str(concurrent)]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE)
        assert proc.stdout is not None
        proc.stdout.readline()
        procs.append(proc)
    return ports, procs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--children", default="")
    parser.add_argument("--concurrent", type=int, default=0, help="children called at once")
    args = parser.parse_args()
    children = [c for c in args.children.split(",") if c]
    try:
        import uvloop

        uvloop.run(serve(args.port, children, args.concurrent))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
