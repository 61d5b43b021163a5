"""The witnesses ``audit verify`` holds the event store against, read back from JetStream.

Two streams: ``ORDERS``, of which every ``trading.orders.*`` message is read
(the risk copies carry the same payloads and add nothing), keeping each
event's stream, version and payload digest by its event id (the
``Nats-Msg-Id``); and ``AUDIT_CHECKPOINTS``, whose checkpoints are checked for
their signature and their place in the chain before their heads are trusted.
Both are read with ordered consumers from the first message to the last.
"""

from __future__ import annotations

from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api
from nats.js.errors import NotFoundError

from brokermesh.domain.audit import (
    Break,
    CheckpointedHead,
    CheckpointRecord,
    PublishedCopies,
    PublishedCopy,
    payload_digest,
)
from brokermesh.mesh.jetstream import AUDIT_CHECKPOINTS_STREAM, CHECKPOINT_SUBJECT
from brokermesh.services.ledger import checkpoints, subjects

ORDER_COPIES = f"{subjects.ORDERS_PREFIX}.>"


async def published_copies(
    js: JetStreamContext, *, message_timeout_s: float = 5.0
) -> PublishedCopies:
    """Every order event JetStream still holds, by event id.

    An event id with two copies that differ (in payload, stream or version) is
    listed as conflicting: a later copy must not mask the first, nor the
    first a later one. Raises TimeoutError when the server stops delivering
    before the last message, and ValueError for a message without the headers
    the relay always sets.
    """
    try:
        info = await js.stream_info(subjects.STREAM, subjects_filter=ORDER_COPIES)
    except NotFoundError:
        return PublishedCopies({}, stream_exists=False)
    max_age_s = float(info.config.max_age or 0)
    if not sum((info.state.subjects or {}).values()):
        return PublishedCopies({}, max_age_s=max_age_s)

    copies: dict[str, PublishedCopy] = {}
    conflicting: set[str] = set()

    def keep(msg: Msg) -> None:
        event_id, copy = _copy_of(msg.headers or {}, msg.data, msg.subject)
        if copies.setdefault(event_id, copy) != copy:
            conflicting.add(event_id)

    await _read_each(js, subjects.STREAM, ORDER_COPIES, keep, message_timeout_s)
    return PublishedCopies(copies, frozenset(conflicting), max_age_s=max_age_s)


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


async def checkpoint_record(
    js: JetStreamContext, key: Ed25519PublicKey, *, message_timeout_s: float = 5.0
) -> CheckpointRecord:
    """The stream heads the ledger's checkpoints vouch for, and what is wrong with them.

    A checkpoint counts only when ``key`` signed it; each must carry the
    number of its place on the stream and the digest of the checkpoint before
    it (the first: all zeros). Raises TimeoutError when the server stops
    delivering before the last message.
    """
    try:
        info = await js.stream_info(AUDIT_CHECKPOINTS_STREAM)
    except NotFoundError:
        return CheckpointRecord({}, 0, stream_exists=False)
    if not info.state.messages:
        return CheckpointRecord({}, 0)

    chain = _Chain(key)
    await _read_each(
        js,
        AUDIT_CHECKPOINTS_STREAM,
        CHECKPOINT_SUBJECT,
        lambda msg: chain.add(msg.metadata.sequence.stream, msg.data, msg.headers or {}),
        message_timeout_s,
    )
    return CheckpointRecord(chain.heads, chain.count, tuple(chain.breaks))


class _Chain:
    """The checkpoints read so far, in stream order, and the breaks among them."""

    def __init__(self, key: Ed25519PublicKey) -> None:
        self._key = key
        self._key_id = checkpoints.key_id(key)
        self._previous = 0
        self._prev_digest = checkpoints.GENESIS
        self.count = 0
        self.heads: dict[tuple[str, int], CheckpointedHead] = {}
        self.breaks: list[Break] = []

    def add(self, number: int, body: bytes, headers: dict[str, str]) -> None:
        self.count += 1
        follows = number == self._previous + 1
        if not follows:
            self.breaks.append(
                Break(
                    "",
                    0,
                    0,
                    f"checkpoints {self._previous + 1} to {number - 1} are missing from the "
                    f"stream {AUDIT_CHECKPOINTS_STREAM}",
                )
            )
        problem = self._problem(number, body, headers, follows=follows)
        if problem:
            self.breaks.append(Break("", 0, 0, f"checkpoint {number}: {problem}"))
        # Whatever it was, the next checkpoint chains onto these bytes.
        self._previous = number
        self._prev_digest = checkpoints.digest(body)

    def _problem(self, number: int, body: bytes, headers: dict[str, str], *, follows: bool) -> str:
        signature = headers.get(checkpoints.SIGNATURE_HEADER, "")
        if not checkpoints.signature_valid(self._key, body, signature):
            return f"the signature does not verify with the ledger's key {self._key_id}"
        try:
            checkpoint = checkpoints.parse(body)
        except checkpoints.CheckpointFormatError as exc:
            return str(exc)
        if checkpoint.number != number:
            return f"it calls itself checkpoint {checkpoint.number}"
        # After a gap the one before is unknown; the gap is reported already.
        if follows and checkpoint.prev != self._prev_digest:
            before = f"checkpoint {number - 1}" if number > 1 else "the genesis"
            return f"it does not chain onto {before}"
        return self._record(checkpoint)

    def _record(self, checkpoint: checkpoints.Checkpoint) -> str:
        """Keep the heads of a verified checkpoint; a head that contradicts an earlier one is
        a problem."""
        contradicted = []
        for head in checkpoint.heads:
            recorded = CheckpointedHead(head.stream_id, head.version, head.hash, checkpoint.number)
            earlier = self.heads.setdefault((head.stream_id, head.version), recorded)
            if earlier.hash != head.hash:
                contradicted.append(
                    f"stream {head.stream_id} version {head.version} (checkpoint "
                    f"{earlier.checkpoint} recorded another hash)"
                )
        if not contradicted:
            return ""
        return f"it contradicts earlier checkpoints on {', '.join(contradicted)}"


async def _read_each(
    js: JetStreamContext,
    stream: str,
    subject: str,
    handle: Callable[[Msg], None],
    message_timeout_s: float,
) -> None:
    """Hand every message on ``subject`` of ``stream`` to ``handle``, first to last, as of
    when the read began; one at a time, so a long stream never sits in memory whole."""
    sub = await js.subscribe(
        subject, stream=stream, ordered_consumer=True, deliver_policy=api.DeliverPolicy.ALL
    )
    try:
        while True:
            msg = await sub.next_msg(timeout=message_timeout_s)
            handle(msg)
            if msg.metadata.num_pending == 0:
                return
    finally:
        await sub.unsubscribe()
