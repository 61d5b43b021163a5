"""The published copies of order events, read back from JetStream for ``audit verify``.

Reads every ``trading.orders.*`` message of the ORDERS stream (the risk copies carry the
same payloads and add nothing) with an ordered consumer, and keeps each event's stream,
version and payload digest, keyed by its event id (the ``Nats-Msg-Id``).
"""

from __future__ import annotations

from nats.js import JetStreamContext, api

from brokermesh.domain.audit import PublishedCopy, payload_digest
from brokermesh.services.ledger import subjects

ORDER_COPIES = f"{subjects.ORDERS_PREFIX}.>"


async def published_copies(
    js: JetStreamContext, *, message_timeout_s: float = 5.0
) -> dict[str, PublishedCopy]:
    """Event id -> published copy for every order event JetStream still holds.

    Raises TimeoutError when the server stops delivering before the last message, and
    ValueError for a message without the headers the relay always sets.
    """
    info = await js.stream_info(subjects.STREAM, subjects_filter=ORDER_COPIES)
    if not sum((info.state.subjects or {}).values()):
        return {}

    copies: dict[str, PublishedCopy] = {}
    sub = await js.subscribe(
        ORDER_COPIES,
        stream=subjects.STREAM,
        ordered_consumer=True,
        deliver_policy=api.DeliverPolicy.ALL,
    )
    try:
        while True:
            msg = await sub.next_msg(timeout=message_timeout_s)
            event_id, copy = _copy_of(msg.headers or {}, msg.data, msg.subject)
            copies[event_id] = copy
            if msg.metadata.num_pending == 0:
                return copies
    finally:
        await sub.unsubscribe()


def _copy_of(headers: dict[str, str], data: bytes, subject: str) -> tuple[str, PublishedCopy]:
    try:
        event_id = headers[subjects.MSG_ID]
        copy = PublishedCopy(
            stream_id=headers[subjects.ORDER_ID],
            stream_version=int(headers[subjects.STREAM_VERSION]),
            digest=payload_digest(data),
        )
    except (KeyError, ValueError) as exc:
        raise ValueError(f"message on {subject} lacks the relay's headers ({exc})") from exc
    return event_id, copy
