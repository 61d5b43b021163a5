"""End to end: orders whose hand-off failed or never happened are settled, never left ROUTED.

One platform (``brokermesh up``) serves the module, its reconciler asking venues about
orders unacknowledged for five seconds.
"""

from __future__ import annotations

import signal
import time
import uuid
from typing import Any

import asyncpg
import httpx
import psutil
import pytest

from tests.e2e.conftest import Platform
from tests.trade_capture.support import new_order, record_routed

ACCOUNT = "ACC-987654"
ADVISOR = "ADV-1207"
SETTLED = {"FILLED", "REJECTED", "CANCELLED"}


def get_order(platform: Platform, order_id: str) -> dict[str, Any] | None:
    response = httpx.get(
        f"{platform.base_url}/v1/orders/{order_id}", headers=platform.headers(), timeout=10
    )
    if response.status_code == 404:
        return None
    assert response.status_code == 200, response.text
    order: dict[str, Any] = response.json()
    return order


def wait_until_settled(
    platform: Platform, order_id: str, timeout_s: float = 45.0
) -> dict[str, Any]:
    """Poll the order view until the order is in a final state; the last view either way."""
    deadline = time.monotonic() + timeout_s
    while True:
        view = get_order(platform, order_id)
        if view is not None and (view["state"] in SETTLED or time.monotonic() > deadline):
            return view
        assert time.monotonic() < deadline, f"{order_id} never appeared"
        time.sleep(0.25)


def find_by_client_order_id(platform: Platform, client_order_id: str) -> str:
    deadline = time.monotonic() + 10
    while True:
        response = httpx.get(
            f"{platform.base_url}/v1/orders",
            params={"account_id": ACCOUNT, "page_size": 500},
            headers=platform.headers(),
            timeout=10,
        )
        assert response.status_code == 200, response.text
        for view in response.json()["orders"]:
            if view["order"]["client_order_id"] == client_order_id:
                return str(view["order"]["order_id"])
        assert time.monotonic() < deadline, f"no order with client_order_id {client_order_id}"
        time.sleep(0.2)


def venue_gateway_process(platform: Platform) -> psutil.Process:
    found = [
        process
        for process in psutil.Process(platform.up.pid).children(recursive=True)
        if "brokermesh.services.venue_gateway" in process.cmdline()
    ]
    assert len(found) == 1, found
    return found[0]


@pytest.mark.asyncio
async def test_an_order_routed_but_never_handed_off_is_rejected_naming_the_venue(
    platform: Platform,
) -> None:
    # Arrange: order entry recorded ROUTED and stopped before the hand-off.
    order = new_order()
    conn = await asyncpg.connect(platform.app_dsn, timeout=10)
    try:
        await record_routed(conn, order, venue="XNAS")
    finally:
        await conn.close()

    # Act
    view = wait_until_settled(platform, order.order_id)

    # Assert
    assert view["state"] == "REJECTED", view
    reason = view["history"][-1]["reason"]
    assert reason.startswith("venue XNAS rejected: unknown order"), reason
    assert view["history"][-1]["event_type"] == "OrderRejected"


def test_an_ambiguous_hand_off_is_not_rejected_and_the_venue_settles_the_order(
    platform: Platform,
) -> None:
    # Arrange: the venue gateway hangs while order entry hands the order over.
    body = {
        "account_id": ACCOUNT,
        "symbol": "AAPL",
        "side": "BUY",
        "quantity": 100,
        "order_type": "LIMIT",
        "limit_price": 190.00,
        "time_in_force": "DAY",
        "advisor_id": ADVISOR,
        "client_order_id": f"CO-{uuid.uuid4().hex[:12]}",
    }
    gateway = venue_gateway_process(platform)
    gateway.send_signal(signal.SIGSTOP)

    # Act
    try:
        response = httpx.post(
            f"{platform.base_url}/v1/orders", json=body, headers=platform.headers(), timeout=15
        )
    finally:
        gateway.send_signal(signal.SIGCONT)
    order_id = find_by_client_order_id(platform, body["client_order_id"])
    view = wait_until_settled(platform, order_id)

    # Assert: order entry did not reject it; the venue's account of it settled it.
    if response.status_code == 201:
        assert response.json()["status"] == "ROUTED", response.text
    else:
        assert response.status_code == 504, response.text
    reasons = [step["reason"] for step in view["history"]]
    assert not any("did not get the order" in reason for reason in reasons), reasons
    assert view["state"] in {"FILLED", "REJECTED"}, view
    if view["state"] == "FILLED":
        assert view["cumulative_quantity"] == 100
    else:
        assert reasons[-1].startswith(f"venue {view['venue']} rejected: unknown order"), reasons
    assert platform.up.poll() is None, platform.log_tail()
