"""End to end: REST orders through the whole mesh, JetStream, audit, replay, kill switch.

One platform serves the module; the tests run in file order and the last one
corrupts the event store on purpose, so it must stay last.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
import uuid
from typing import Any

import asyncpg
import httpx
import nats
import pytest
from nats.js.api import DeliverPolicy

from brokermesh.events.v1.order_events_pb2 import OrderEvent
from loadtests import metrics
from loadtests.harness import Endpoints
from tests.deploy.budget import load_budget
from tests.e2e.conftest import (
    BROKERMESH,
    CONTROL_PLANE_MODULE,
    CONTROL_PLANE_RESTART_DELAY_S,
    Platform,
)

ACCOUNT = "ACC-987654"
#: Package whose modules every service process runs (``python -m brokermesh.services.<name>``).
SERVICES = "brokermesh.services"
ADVISOR = "ADV-1207"
OTHER_ADVISOR = "ADV-2001"
TERMINAL = {"FILLED", "BLOCKED", "REJECTED", "CANCELLED"}
BLUEPRINT_EVENTS = [
    "OrderAccepted",
    "OrderValidated",
    "OrderRiskApproved",
    "OrderRouted",
    "OrderFilled",
]
BLUEPRINT_SUBJECTS = [
    "trading.orders.accepted",
    "trading.orders.validated",
    "trading.orders.risk_approved",
    "trading.orders.routed",
    "trading.orders.filled",
]


# --- helpers -----------------------------------------------------------------------------


def order_body(**changes: Any) -> dict[str, Any]:
    """The blueprint order with a fresh client_order_id, changed by ``changes``."""
    body: dict[str, Any] = {
        "account_id": ACCOUNT,
        "symbol": "AAPL",
        "side": "BUY",
        "quantity": 100,
        "order_type": "LIMIT",
        "limit_price": 189.50,
        "time_in_force": "DAY",
        "advisor_id": ADVISOR,
        "client_order_id": f"CO-{uuid.uuid4().hex[:12]}",
    }
    body.update(changes)
    return body


def place(platform: Platform, body: dict[str, Any], advisor: str = ADVISOR) -> httpx.Response:
    return httpx.post(
        f"{platform.base_url}/v1/orders", json=body, headers=platform.headers(advisor), timeout=10
    )


def get_order(platform: Platform, order_id: str) -> dict[str, Any]:
    response = httpx.get(
        f"{platform.base_url}/v1/orders/{order_id}", headers=platform.headers(), timeout=10
    )
    assert response.status_code == 200, response.text
    return response.json()


def wait_for_state(
    platform: Platform, order_id: str, states: set[str], timeout_s: float = 2.0
) -> dict[str, Any]:
    """Poll GET until the order is in one of ``states``; the last view either way. The
    order view is a projection, so it may answer 404 for a moment after the POST."""
    deadline = time.monotonic() + timeout_s
    while True:
        response = httpx.get(
            f"{platform.base_url}/v1/orders/{order_id}", headers=platform.headers(), timeout=10
        )
        if response.status_code == 200:
            view: dict[str, Any] = response.json()
            if view["state"] in states or time.monotonic() > deadline:
                return view
        else:
            assert response.status_code == 404, response.text
            assert time.monotonic() < deadline, f"{order_id} still not found: {response.text}"
        time.sleep(0.05)


def list_orders(platform: Platform) -> list[dict[str, Any]]:
    response = httpx.get(
        f"{platform.base_url}/v1/orders",
        params={"account_id": ACCOUNT, "page_size": 500},
        headers=platform.headers(),
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return response.json()["orders"]


async def published(
    platform: Platform, subject: str, order_id: str, *, until: Any = None, timeout_s: float = 5.0
) -> list[tuple[str, dict[str, str], OrderEvent]]:
    """Every message on ``subject`` (wildcards allowed) about ``order_id``, in stream order:
    (subject, headers, event). Re-reads the stream until ``until(messages)`` holds or the
    timeout passes, since the relay publishes after the commit."""
    client = await nats.connect(platform.nats_url)
    try:
        js = client.jetstream()
        deadline = time.monotonic() + timeout_s
        while True:
            found = []
            sub = await js.subscribe(
                subject, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
            )
            try:
                while True:
                    try:
                        msg = await sub.next_msg(timeout=1.0)
                    except TimeoutError:
                        break
                    event = OrderEvent.FromString(msg.data)
                    if event.order_id == order_id:
                        found.append((msg.subject, dict(msg.headers or {}), event))
                    if msg.metadata.num_pending == 0:
                        break
            finally:
                await sub.unsubscribe()
            if until is None or until(found) or time.monotonic() > deadline:
                return found
            await asyncio.sleep(0.2)
    finally:
        await client.close()


def brokermesh(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BROKERMESH, *args], capture_output=True, text=True, timeout=timeout)


def verify_audit(platform: Platform) -> subprocess.CompletedProcess[str]:
    """``brokermesh audit verify`` against the platform's store and its JetStream witnesses."""
    return brokermesh(
        "audit",
        "verify",
        "--database-url",
        platform.dsn,
        "--nats-url",
        platform.layout.nats_url,
        "--checkpoint-key",
        str(platform.data_dir / "ledger" / "keys" / "checkpoint-signing.pub.pem"),
    )


def control(platform: Platform, action: str, reason: str, *arguments: str) -> None:
    result = brokermesh(
        "control",
        action,
        *arguments,
        "--reason",
        reason,
        "--operator",
        "OPS-1",
        "--address",
        platform.control_address,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def place_until(platform: Platform, wanted: set[str], timeout_s: float = 3.0) -> dict[str, Any]:
    """Place fresh orders until one ends in ``wanted`` (a control change reaches the data
    plane through a NATS watch, so the first order after it may still see the old value)."""
    deadline = time.monotonic() + timeout_s
    while True:
        response = place(platform, order_body(quantity=10))
        assert response.status_code in (200, 201), response.text
        view = wait_for_state(platform, response.json()["order_id"], TERMINAL)
        if view["state"] in wanted or time.monotonic() > deadline:
            return view
        time.sleep(0.2)


# --- the order path ----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_blueprint_order_fills_and_its_events_reach_jetstream_in_order(
    platform: Platform,
) -> None:
    # Arrange
    body = order_body(client_order_id=f"CO-332819-{uuid.uuid4().hex[:6]}")

    # Act
    response = place(platform, body)
    placed = response.json()
    view = wait_for_state(platform, placed["order_id"], {"FILLED"}, timeout_s=2.0)
    messages = await published(
        platform,
        "trading.orders.>",
        placed["order_id"],
        until=lambda found: len(found) >= len(BLUEPRINT_SUBJECTS),
    )

    # Assert: the REST answer
    assert response.status_code == 201, response.text
    assert placed["order_id"].startswith("ORD-")
    assert placed["status"] in {"ROUTED", "FILLED"}
    assert placed["trace_id"]
    assert placed["risk_decisions"] and all(d["result"] == "PASS" for d in placed["risk_decisions"])
    # Assert: the order view
    assert view["state"] == "FILLED", view
    assert sum(fill["quantity"] for fill in view["fills"]) == 100
    assert view["cumulative_quantity"] == 100
    assert view["leaves_quantity"] == 0
    assert [step["state"] for step in view["history"]] == [
        "NEW",
        "VALIDATED",
        "RISK_APPROVED",
        "ROUTED",
        "FILLED",
    ]
    assert view["order"]["client_order_id"] == body["client_order_id"]
    # Assert: the stream
    async with _Database(platform) as conn:
        stored = await conn.fetch(
            "SELECT event_id::text AS event_id, event_type FROM order_events "
            "WHERE stream_id = $1 ORDER BY stream_version",
            placed["order_id"],
        )
    assert [row["event_type"] for row in stored] == BLUEPRINT_EVENTS
    assert [subject for subject, _, _ in messages] == BLUEPRINT_SUBJECTS
    assert [headers["Nats-Msg-Id"] for _, headers, _ in messages] == [
        row["event_id"] for row in stored
    ]
    assert [event.event_id for _, _, event in messages] == [row["event_id"] for row in stored]
    assert [event.event_type for _, _, event in messages] == BLUEPRINT_EVENTS
    assert {event.trace_id for _, _, event in messages} == {placed["trace_id"]}


def segment_counts(platform: Platform) -> dict[str, float]:
    """Observations of each pre-venue segment so far, over every service's metrics."""
    urls = Endpoints(platform.data_dir, platform.offset).all_metrics_urls()
    counts: dict[str, float] = {}
    for key, series in metrics.scrape(urls, (metrics.SEGMENT_METRIC,))[
        metrics.SEGMENT_METRIC
    ].items():
        segment = dict(key)["segment"]
        counts[segment] = counts.get(segment, 0.0) + series.count
    return counts


def test_an_order_over_rest_is_observed_in_every_segment_an_slo_watches(
    platform: Platform,
) -> None:
    # An SLO over a segment nobody records could never fire.
    watched = [objective.segment for objective in load_budget().objectives]
    before = segment_counts(platform)

    response = place(platform, order_body())

    assert response.status_code == 201, response.text
    assert response.json()["status"] == "ROUTED"
    after = segment_counts(platform)
    assert {s: after.get(s, 0.0) - before.get(s, 0.0) for s in watched} == dict.fromkeys(
        watched, 1.0
    )


@pytest.mark.asyncio
async def test_order_above_the_notional_limit_is_blocked_and_never_reaches_a_venue(
    platform: Platform,
) -> None:
    # Arrange: 6,000 AAPL at 189.50 is $1,137,000, over the $1,000,000 max notional
    # but within the account's buying power, so the OMS validates it and risk blocks it
    # (concentration may fail too).
    body = order_body(quantity=6000)

    # Act
    response = place(platform, body)
    placed = response.json()
    view = wait_for_state(platform, placed["order_id"], TERMINAL)
    orders = await published(
        platform,
        "trading.orders.>",
        placed["order_id"],
        until=lambda found: any(s.endswith(".blocked") for s, _, _ in found),
    )
    risk_fail = await published(platform, "risk.decisions.fail", placed["order_id"], until=bool)

    # Assert
    assert response.status_code == 201, response.text
    assert placed["status"] == "BLOCKED", placed
    failed = [d for d in placed["risk_decisions"] if d["result"] == "FAIL"]
    assert "max_notional" in [d["policy"] for d in failed], placed["risk_decisions"]
    assert view["state"] == "BLOCKED"
    assert "ROUTED" not in [step["state"] for step in view["history"]]
    assert not view["venue"] and not view["fills"]
    subjects = [subject for subject, _, _ in orders]
    assert "trading.orders.blocked" in subjects
    assert "trading.orders.routed" not in subjects
    assert len(risk_fail) == 1
    assert risk_fail[0][2].event_type == "OrderBlocked"


def test_repeated_client_order_id_returns_the_first_order_and_creates_no_second(
    platform: Platform,
) -> None:
    # Arrange
    body = order_body()
    first = place(platform, body)
    assert first.status_code == 201, first.text

    # Act
    second = place(platform, body)

    # Assert
    assert second.status_code in (200, 201), second.text
    assert second.json()["order_id"] == first.json()["order_id"]
    assert second.json().get("duplicate") is True
    assert first.json().get("duplicate") is False
    wait_for_state(platform, first.json()["order_id"], TERMINAL)
    same = [
        o for o in list_orders(platform) if o["order"]["client_order_id"] == body["client_order_id"]
    ]
    assert [o["order"]["order_id"] for o in same] == [first.json()["order_id"]]


# --- the edge: authentication, entitlements, validation ----------------------------------


def test_advisor_acting_on_another_advisors_account_is_forbidden(platform: Platform) -> None:
    # Arrange
    body = order_body(advisor_id=OTHER_ADVISOR)

    # Act
    response = place(platform, body, advisor=OTHER_ADVISOR)

    # Assert
    assert response.status_code == 403, response.text
    assert response.json()["error"]["code"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"quantity": "abc"}, "quantity"),
        ({"quantity": 100.5}, "quantity"),
        ({"symbol": None}, "symbol"),
    ],
    ids=["quantity-not-a-number", "fractional-quantity", "missing-symbol"],
)
def test_malformed_order_is_a_bad_request_naming_the_field(
    platform: Platform, change: dict[str, Any], field: str
) -> None:
    # Arrange
    body = order_body(**change)
    body = {key: value for key, value in body.items() if value is not None}

    # Act
    response = place(platform, body)

    # Assert
    assert response.status_code == 400, response.text
    assert response.json()["error"]["field"] == field


def test_order_without_a_token_is_unauthenticated(platform: Platform) -> None:
    # Act
    response = httpx.post(f"{platform.base_url}/v1/orders", json=order_body(), timeout=10)

    # Assert
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "UNAUTHENTICATED"


# --- the control plane, apart from the data plane ---------------------------------------


def test_data_plane_holds_the_last_controls_through_a_control_plane_outage_and_takes_later_ones(
    platform: Platform,
) -> None:
    try:
        # Arrange: REDUCED mode, then a halt; neither is the built-in default.
        control(platform, "mode", "e2e drill: reduced", "reduced")
        assert "REDUCED mode" in place_until_blocked_in_reduced_mode(platform)
        control(platform, "halt", "e2e drill: halted")
        halted = place_until(platform, {"REJECTED"})
        assert "e2e drill: halted" in halted["history"][-1]["reason"], halted["history"]
        assert "ROUTED" not in [step["state"] for step in halted["history"]]
        (victim,) = platform.service_processes(CONTROL_PLANE_MODULE)
        data_plane = {p.pid for p in platform.service_processes(SERVICES)} - {victim.pid}

        # Act: the control plane that `brokermesh up` runs dies.
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)

        # Assert: during the outage the data plane keeps serving on the last controls, the
        # halt and the operator's reason, not on the defaults.
        assert not platform.control_plane_serving()
        assert (
            brokermesh(
                "control", "show", "--address", platform.control_address, "--timeout", "1"
            ).returncode
            != 0
        )
        response = place(platform, order_body(quantity=10))
        assert response.status_code == 201, response.text
        during = wait_for_state(platform, response.json()["order_id"], TERMINAL)
        assert not platform.control_plane_serving(), "the order was not placed during the outage"
        assert during["state"] == "REJECTED", during
        assert "e2e drill: halted" in during["history"][-1]["reason"], during["history"]
        assert platform.up.poll() is None, platform.log_tail()
        assert data_plane <= {p.pid for p in platform.service_processes(SERVICES)}
        assert "control-plane exited; the other processes keep running" in platform.log.read_text()

        # The supervisor starts it again; a change made then reaches the data plane.
        platform.wait_control_plane_serving(CONTROL_PLANE_RESTART_DELAY_S + 60)
        (restarted,) = platform.service_processes(CONTROL_PLANE_MODULE)
        assert restarted.pid != victim.pid
        control(platform, "resume", "e2e drill: resumed after the outage")
        assert place_until(platform, {"FILLED"})["state"] == "FILLED"
        # The mode set before the outage still holds.
        assert "REDUCED mode" in place_until_blocked_in_reduced_mode(platform)
    finally:
        platform.wait_control_plane_serving(CONTROL_PLANE_RESTART_DELAY_S + 60)
        control(platform, "resume", "e2e drill over")
        control(platform, "mode", "e2e drill over", "normal")
    assert place_until(platform, {"FILLED"})["state"] == "FILLED"


def place_until_blocked_in_reduced_mode(platform: Platform, timeout_s: float = 3.0) -> str:
    """Place 3,000 AAPL ($568,500: inside the $1,000,000 max notional, outside half of it)
    until risk blocks it on the halved limit; that policy's reason."""
    deadline = time.monotonic() + timeout_s
    while True:
        response = place(platform, order_body(quantity=3000))
        assert response.status_code in (200, 201), response.text
        reasons = {
            d["policy"]: d["reason"]
            for d in response.json().get("risk_decisions", [])
            if d["result"] == "FAIL"
        }
        notional = reasons.get("max_notional", "")
        if "REDUCED mode" in notional or time.monotonic() > deadline:
            return notional
        time.sleep(0.2)


# --- replay and audit (the tamper test must stay last) ----------------------------------


def test_replay_rebuilds_the_order_views_to_the_same_state(platform: Platform) -> None:
    # Arrange: every order of the account settled, and what GET shows for it.
    before = list_orders(platform)
    assert before and all(o["state"] in TERMINAL for o in before), before
    one = before[0]["order"]["order_id"]
    single_before = get_order(platform, one)

    # Act
    result = brokermesh("replay", "--database-url", platform.dsn)

    # Assert
    assert result.returncode == 0, result.stdout + result.stderr
    assert "rebuilt" in result.stdout
    assert list_orders(platform) == before
    assert get_order(platform, one) == single_before
    check = brokermesh("replay", "--check", "--database-url", platform.dsn)
    assert check.returncode == 0, check.stdout + check.stderr


def test_audit_verify_passes_on_the_untouched_event_store(platform: Platform) -> None:
    # Act
    result = verify_audit(platform)

    # Assert
    assert result.returncode == 0, result.stdout + result.stderr
    assert "hash chain intact" in result.stdout
    assert "events checked against their copies on JetStream" in result.stdout


@pytest.mark.asyncio
async def test_audit_verify_fails_naming_the_stream_after_an_event_is_edited_by_hand(
    platform: Platform,
) -> None:
    # Arrange: an accepted order's quantity rewritten in place, the append-only trigger off.
    async with _Database(platform) as conn:
        row = await conn.fetchrow(
            "SELECT position, stream_id, payload FROM order_events "
            "WHERE event_type = 'OrderAccepted' ORDER BY position LIMIT 1"
        )
        event = OrderEvent.FromString(row["payload"])
        event.quantity += 900
        await conn.execute("ALTER TABLE order_events DISABLE TRIGGER order_events_append_only")
        try:
            await conn.execute(
                "UPDATE order_events SET payload = $1 WHERE position = $2",
                event.SerializeToString(),
                row["position"],
            )
        finally:
            await conn.execute("ALTER TABLE order_events ENABLE TRIGGER order_events_append_only")

    # Act
    result = verify_audit(platform)

    # Assert
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"BROKEN stream {row['stream_id']}" in result.stdout, result.stdout


class _Database:
    """``async with _Database(platform) as conn``: a superuser connection to the database."""

    def __init__(self, platform: Platform) -> None:
        self._dsn = platform.dsn
        self._conn: asyncpg.Connection | None = None

    async def __aenter__(self) -> asyncpg.Connection:
        self._conn = await asyncpg.connect(self._dsn, timeout=10)
        return self._conn

    async def __aexit__(self, *exc: object) -> None:
        assert self._conn is not None
        await self._conn.close()
