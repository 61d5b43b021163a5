"""Print every order event published on JetStream, as JSON, with its trace id.

A minimal consumer of the ``ORDERS`` stream (see ``docs/events.md``). It
binds a durable pull consumer to ``trading.orders.>`` (``--subject`` narrows
it), so a restart resumes after the last acknowledged event instead of from
the beginning. Each message is decoded as a ``brokermesh.events.v1.OrderEvent``
and printed as one JSON line, together with the subject, the NATS message id
and the trace id carried in the W3C ``traceparent`` header.

Delivery is at least once: a message whose ack was lost is delivered again,
so a real consumer keeps the highest ``stream_version`` it has applied per
order and skips anything at or below it.

Run it against the local platform (``brokermesh up``)::

    .venv/bin/python docs/subscriber_example.py
    .venv/bin/python docs/subscriber_example.py --subject 'trading.orders.filled' --new-only

Stop with Ctrl-C. ``--delete`` removes the durable consumer on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal

import nats
from google.protobuf.json_format import MessageToDict
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from brokermesh.events.v1.order_events_pb2 import OrderEvent
from brokermesh.services.ledger import subjects

#: Messages fetched per round trip, and how long a fetch waits for the first one.
BATCH = 64
FETCH_WAIT_S = 2.0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--nats-url", default=os.environ.get("BROKERMESH_NATS_URL", "nats://127.0.0.1:4222")
    )
    parser.add_argument(
        "--subject",
        default=f"{subjects.ORDERS_PREFIX}.>",
        help="subject filter inside the ORDERS stream (default: %(default)s)",
    )
    parser.add_argument(
        "--durable",
        default="order-printer",
        help="durable consumer name; the server remembers its position",
    )
    parser.add_argument(
        "--new-only",
        action="store_true",
        help="start with events published from now on (first run only)",
    )
    parser.add_argument("--delete", action="store_true", help="delete the durable consumer on exit")
    return parser.parse_args()


def describe(msg: Msg) -> dict[str, object]:
    """One message as a JSON-ready dict: where it came from, its ids, and the event itself."""
    headers = msg.headers or {}
    event = OrderEvent.FromString(msg.data)
    return {
        "subject": msg.subject,
        "stream_sequence": msg.metadata.sequence.stream,
        "msg_id": headers.get(subjects.MSG_ID, ""),
        "trace_id": subjects.traceparent_trace_id(headers.get(subjects.TRACEPARENT, "")),
        "event": MessageToDict(event, preserving_proto_field_name=True),
    }


async def consume(args: argparse.Namespace, stop: asyncio.Event) -> None:
    nc = await nats.connect(args.nats_url, name="order-printer", max_reconnect_attempts=-1)
    js = nc.jetstream()
    config = ConsumerConfig(
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.NEW if args.new_only else DeliverPolicy.ALL,
    )
    sub = await js.pull_subscribe(
        args.subject, durable=args.durable, stream=subjects.STREAM, config=config
    )
    try:
        while not stop.is_set():
            try:
                messages = await sub.fetch(BATCH, timeout=FETCH_WAIT_S)
            except NatsTimeoutError:
                continue  # Nothing new; ask again.
            for msg in messages:
                print(json.dumps(describe(msg)), flush=True)
                # Ack after printing: a crash in between means a redelivery, not a loss.
                await msg.ack()
    finally:
        if args.delete:
            with contextlib.suppress(Exception):
                await js.delete_consumer(subjects.STREAM, args.durable)
        await nc.close()


def main() -> None:
    args = parse_args()

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await consume(args, stop)

    asyncio.run(run())


if __name__ == "__main__":
    main()
