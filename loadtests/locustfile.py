"""Locust scenarios against a running platform: a REST user through the gateway and a gRPC
user calling order entry directly.

Configuration comes from the environment (``run_loadtest.py`` sets it):
``LOADTEST_TOKEN`` (bearer token), ``LOADTEST_GRPC`` (order-entry address),
``LOADTEST_SAMPLES`` (CSV path for this process's own sub-millisecond timings) and
``LOADTEST_USER_RATE`` (orders per second each user sends, at Poisson-distributed
intervals net of the response time, so the offered load is users x rate whatever the
latency, and users never fall into step).
Locust rounds response times to whole milliseconds, so every request is also timed with
``time.perf_counter`` and written to ``LOADTEST_SAMPLES`` when the test stops.
"""

from __future__ import annotations

import grpc.experimental.gevent as grpc_gevent

grpc_gevent.init_gevent()

import csv  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

import grpc  # noqa: E402
from locust import FastHttpUser, User, events, task  # noqa: E402

from brokermesh.common.v1 import common_pb2  # noqa: E402
from brokermesh.trading.v1 import order_entry_pb2, order_entry_pb2_grpc  # noqa: E402
from loadtests.orders import (  # noqa: E402
    ACCOUNT,
    ADVISOR,
    QUANTITY,
    client_order_id,
    order_specs,
    rest_body,
)

#: (kind, wall-clock start, latency seconds, ok) of every request this process sent.
SAMPLES: list[tuple[str, float, float, int]] = []
SIDES = {"BUY": common_pb2.SIDE_BUY, "SELL": common_pb2.SIDE_SELL}
#: Orders per second each user offers; run_loadtest.py sets it from the target rate.
USER_RATE = float(os.environ.get("LOADTEST_USER_RATE", "2"))


def poisson_throughput(rate: float) -> Any:
    """A locust ``wait_time``: each user starts a request every 1/rate seconds on average,
    at exponentially distributed intervals, whatever the previous request took.

    Like locust's ``constant_throughput`` the wait makes up for the response time, but
    its intervals are random: users spawned together would otherwise send in step,
    a burst of every user's order at once each interval, which measures queueing
    behind the burst rather than the platform.
    """

    def wait_time(user: Any) -> float:
        now = time.monotonic()
        due = getattr(user, "_next_start", now) + random.expovariate(rate)
        user._next_start = max(due, now)
        return user._next_start - now

    return wait_time


def _record(kind: str, started: float, elapsed: float, ok: bool) -> None:
    SAMPLES.append((kind, time.time() - elapsed, elapsed, int(ok)))


@events.test_stop.add_listener
def _write_samples(**_: Any) -> None:
    path = os.environ.get("LOADTEST_SAMPLES")
    if not path:
        return
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["kind", "start", "latency_s", "ok"])
        writer.writerows(SAMPLES)


class RestOrderUser(FastHttpUser):
    """POST /v1/orders with a bearer token; a unique client_order_id per request."""

    wait_time = poisson_throughput(USER_RATE)
    weight = 3

    def on_start(self) -> None:
        self._specs = order_specs()
        self._headers = {"Authorization": f"Bearer {os.environ['LOADTEST_TOKEN']}"}

    @task
    def submit_order(self) -> None:
        body = rest_body(*next(self._specs), prefix="lt-rest")
        started = time.perf_counter()
        with self.client.post(
            "/v1/orders",
            json=body,
            headers=self._headers,
            name="POST /v1/orders",
            catch_response=True,
        ) as response:
            elapsed = time.perf_counter() - started
            ok = response.status_code in (200, 201)
            if not ok:
                response.failure(f"HTTP {response.status_code}: {response.text[:200]}")
        _record("rest", started, elapsed, ok)


class GrpcOrderUser(User):
    """SubmitOrder straight to order entry over gRPC (gevent-friendly channel)."""

    wait_time = poisson_throughput(USER_RATE)
    weight = 1

    def on_start(self) -> None:
        self._specs = order_specs()
        self._channel = grpc.insecure_channel(os.environ["LOADTEST_GRPC"])
        self._stub = order_entry_pb2_grpc.OrderEntryServiceStub(self._channel)

    def on_stop(self) -> None:
        self._channel.close()

    @task
    def submit_order(self) -> None:
        symbol, side, price = next(self._specs)
        request = order_entry_pb2.SubmitOrderRequest(
            account_id=ACCOUNT,
            symbol=symbol,
            side=SIDES[side],
            quantity=QUANTITY,
            order_type=common_pb2.ORDER_TYPE_LIMIT,
            limit_price=str(price),
            time_in_force=common_pb2.TIME_IN_FORCE_DAY,
            advisor_id=ADVISOR,
            client_order_id=client_order_id("lt-grpc"),
        )
        started = time.perf_counter()
        exception: Exception | None = None
        try:
            self._stub.SubmitOrder(request, timeout=10)
        except grpc.RpcError as exc:
            exception = exc
        elapsed = time.perf_counter() - started
        _record("grpc", started, elapsed, exception is None)
        self.environment.events.request.fire(
            request_type="grpc",
            name="SubmitOrder",
            response_time=elapsed * 1000,
            response_length=0,
            exception=exception,
            context={},
        )
