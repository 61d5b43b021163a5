"""Signed checkpoints of the event store: the ledger's chained record of every stream's head.

A hash chain alone cannot tell that its last rows, or a whole stream, were
deleted, or that a row was removed and every hash after it recomputed. So the
ledger periodically (and once more on shutdown) publishes a checkpoint to the
``AUDIT_CHECKPOINTS`` stream, which keeps every message and refuses deletion.
A checkpoint names the head (stream id, version, hash) of every order stream
that changed since the previous one, carries the digest of the previous
checkpoint, so that the checkpoints form a chain of their own, and is signed
with the ledger's Ed25519 key. ``brokermesh audit verify`` checks the chain and
the signatures and then that the store still holds every checkpointed head
with the same hash.

A checkpoint's number is the stream sequence of its message. The body is
compact JSON with sorted keys, and the signature (base64, in the
``Brokermesh-Signature`` header) and the digest both cover the body's exact
bytes, so a verifier never has to re-encode anything.

Which streams changed is read by transaction id, not by position: the outbox
row of every event records the id of the transaction that wrote it, and each
checkpoint stores the oldest transaction still running when it was taken (its
``cursor``). The next checkpoint looks at every outbox row of that transaction
or a later one, so an event whose transaction took a lower position and
committed late is still covered.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import nats.errors
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from nats.js.api import Header
from nats.js.client import JetStreamContext
from nats.js.errors import APIError, NotFoundError

from brokermesh.mesh.jetstream import AUDIT_CHECKPOINTS_STREAM, CHECKPOINT_SUBJECT
from brokermesh.mesh.keys import ensure_private_key

_LOGGER = logging.getLogger(__name__)

#: ``prev`` of the first checkpoint.
GENESIS = bytes(32)
#: Version of the body's layout.
FORMAT = 1
#: Header carrying the base64 Ed25519 signature of the body.
SIGNATURE_HEADER = "Brokermesh-Signature"
#: File names of the key pair in the ledger's key directory.
PRIVATE_KEY_FILE = "checkpoint-signing.pem"
PUBLIC_KEY_FILE = "checkpoint-signing.pub.pem"
#: Most heads in one checkpoint, so a message stays far below NATS's 1 MB payload limit.
MAX_HEADS = 2_000
#: JetStream's error code for a publication whose expected last subject sequence is stale.
_WRONG_LAST_SEQUENCE = 10071

_SNAPSHOT = """
SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS xmin,
       pg_snapshot_xmax(pg_current_snapshot())::text AS xmax
"""

#: The head of every stream with an outbox row written by transaction $1 or a later one.
_HEADS_SINCE = """
SELECT DISTINCT ON (e.stream_id) e.stream_id, e.stream_version, e.hash
FROM order_events e
WHERE e.stream_id IN (
    SELECT c.stream_id FROM outbox o JOIN order_events c USING (event_id)
    WHERE o.xact >= $1::text::xid8
)
ORDER BY e.stream_id, e.stream_version DESC
"""


class CheckpointFormatError(ValueError):
    """A message on the checkpoint stream is not a checkpoint this code can read."""


class CheckpointError(Exception):
    """JetStream stored a checkpoint somewhere other than where the chain expects it."""


@dataclass(frozen=True, slots=True)
class Head:
    """Where one order stream ended when a checkpoint was taken."""

    stream_id: str
    version: int
    hash: bytes


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """One checkpoint: its place in the chain, where the next one resumes, and the heads."""

    #: The stream sequence of its message; the first checkpoint is number 1.
    number: int
    #: sha256 of the previous checkpoint's body; :data:`GENESIS` for the first.
    prev: bytes
    #: Transaction id from which the next checkpoint looks for changed streams.
    cursor: int
    #: When it was taken, ISO 8601 in UTC.
    taken_at: str
    #: :func:`key_id` of the key that signed it.
    key_id: str
    heads: tuple[Head, ...]

    def body(self) -> bytes:
        """The exact bytes that are published, digested and signed."""
        document = {
            "format": FORMAT,
            "number": self.number,
            "prev": self.prev.hex(),
            # A string: transaction ids reach 2**64, beyond what JSON readers hold exactly.
            "cursor": str(self.cursor),
            "taken_at": self.taken_at,
            "key_id": self.key_id,
            "heads": [[head.stream_id, head.version, head.hash.hex()] for head in self.heads],
        }
        return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


def parse(body: bytes) -> Checkpoint:
    """The checkpoint ``body`` encodes; :class:`CheckpointFormatError` says what is wrong."""
    try:
        document = json.loads(body)
        if not isinstance(document, dict):
            raise CheckpointFormatError("the body is not a JSON object")
        if document.get("format") != FORMAT:
            raise CheckpointFormatError(f"unknown format {document.get('format')!r}")
        return Checkpoint(
            number=_integer(document["number"]),
            prev=_hash(document["prev"]),
            cursor=int(document["cursor"]),
            taken_at=str(document["taken_at"]),
            key_id=str(document["key_id"]),
            heads=tuple(
                Head(str(stream_id), _integer(version), _hash(digest))
                for stream_id, version, digest in document["heads"]
            ),
        )
    except CheckpointFormatError:
        raise
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointFormatError(f"not a checkpoint: {type(exc).__name__} {exc}") from exc


def _integer(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{value!r} is not an integer")
    return value


def _hash(value: Any) -> bytes:
    digest = bytes.fromhex(str(value))
    if len(digest) != 32:
        raise ValueError(f"{value!r} is not a sha256 in hex")
    return digest


def digest(body: bytes) -> bytes:
    """What the next checkpoint's ``prev`` must hold."""
    return hashlib.sha256(body).digest()


def signature_of(key: Ed25519PrivateKey, body: bytes) -> str:
    """The header value signing ``body``."""
    return base64.b64encode(key.sign(body)).decode()


def signature_valid(key: Ed25519PublicKey, body: bytes, signature: str) -> bool:
    """Whether ``signature`` (the header value) is ``key``'s signature of ``body``."""
    try:
        key.verify(base64.b64decode(signature, validate=True), body)
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


def key_id(key: Ed25519PublicKey) -> str:
    """A short, stable name of a public key: the start of the sha256 of its raw bytes."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


# -- keys ------------------------------------------------------------------------------------


def public_key_path(private_path: Path) -> Path:
    """Where the public half of the key at ``private_path`` is written: beside it."""
    return private_path.with_name(PUBLIC_KEY_FILE)


def ensure_signing_key(path: Path) -> Ed25519PrivateKey:
    """Load the signing key at ``path``, generating the pair on first use.

    The private key is written with mode 0600 and never overwritten; the
    public half goes beside it (:func:`public_key_path`) for ``audit verify``.
    A key provisioned from elsewhere (a Kubernetes Secret) is only read.
    """
    key, generated = ensure_private_key(path, public_key_path(path))
    if generated:
        _LOGGER.info("generated the checkpoint signing key %s", path)
    return key


# -- taking checkpoints ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Tip:
    """The newest checkpoint on the stream, which the next one chains onto."""

    #: Its number (= stream sequence); 0 when the stream holds none.
    number: int
    digest: bytes
    cursor: int


class Checkpointer:
    """Publishes the checkpoints of one event store.

    :meth:`checkpoint` takes one and may be called at any time, also while
    :meth:`run` loops; calls are serialised. Several ledgers may checkpoint the
    same store: each publication names the sequence it chains onto, so
    JetStream refuses the loser of a race, which re-reads the tip and goes on.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        js: JetStreamContext,
        key: Ed25519PrivateKey,
        *,
        interval_s: float = 10.0,
        publish_timeout_s: float = 5.0,
        max_heads: int = MAX_HEADS,
    ) -> None:
        self._pool = pool
        self._js = js
        self._key = key
        self._key_id = key_id(key.public_key())
        self._interval_s = interval_s
        self._publish_timeout_s = publish_timeout_s
        self._max_heads = max_heads
        self._lock = asyncio.Lock()
        self._tip: _Tip | None = None
        #: Where the next scan starts; ahead of the tip's cursor after a round with no news.
        self._scan_from = 0
        #: The heads the last scan found, so an unchanged head is not checkpointed again.
        self._seen: dict[str, tuple[int, bytes]] = {}
        #: Checkpoints published since start, for logs and tests.
        self.published = 0

    async def run(self) -> None:
        """Checkpoint every ``interval_s``, the first time after one interval, until cancelled.

        A failed round is logged and retried at the next interval; the loop
        itself never ends on an error, so a relay running beside it is never
        taken down with it.
        """
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self.attempt()
            except Exception:
                _LOGGER.exception("checkpoint failed; retrying in %.1f s", self._interval_s)

    async def attempt(self) -> int:
        """:meth:`checkpoint`, with a failure logged instead of raised; returns how many were
        published."""
        try:
            return await self.checkpoint()
        except (
            OSError,
            TimeoutError,
            asyncpg.PostgresError,
            asyncpg.InterfaceError,
            nats.errors.Error,
            CheckpointError,
        ) as exc:
            _LOGGER.warning(
                "checkpoint not taken (%s: %s); retrying later", type(exc).__name__, exc
            )
            return 0

    async def checkpoint(self) -> int:
        """Publish the heads of every stream that changed since the last checkpoint.

        Publishes nothing when nothing changed, except the very first
        checkpoint, which is published even for an empty store so that the
        chain exists from the start. Heads beyond ``max_heads`` go out in
        further checkpoints of the same round. Returns how many were published.
        """
        async with self._lock:
            tip = self._tip if self._tip is not None else await self._read_tip()
            heads, next_cursor = await self._changed_heads(tip)
            fresh = [h for h in heads if self._seen.get(h.stream_id) != (h.version, h.hash)]
            published = 0
            if fresh or tip.number == 0:
                published = await self._publish_all(tip, fresh, next_cursor)
            self._seen = {head.stream_id: (head.version, head.hash) for head in heads}
            self._scan_from = next_cursor
            return published

    async def _changed_heads(self, tip: _Tip) -> tuple[list[Head], int]:
        """The heads of the streams written since the scan cursor, and the next cursor."""
        async with self._pool.acquire() as conn:
            # One snapshot: the cursor returned is exact for the rows read.
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                xmin, xmax = (int(value) for value in (await conn.fetch(_SNAPSHOT))[0])
                start = max(self._scan_from, tip.cursor)
                if start > xmax:
                    # A cursor ahead of every transaction this database ever ran belongs to
                    # another database; only a full scan is sure to cover this one.
                    _LOGGER.error(
                        "checkpoint cursor %d is ahead of this database (next transaction %d); "
                        "checkpointing every stream",
                        start,
                        xmax,
                    )
                    start = 0
                rows = await conn.fetch(_HEADS_SINCE, str(start))
        heads = [Head(r["stream_id"], r["stream_version"], bytes(r["hash"])) for r in rows]
        return heads, xmin

    async def _publish_all(self, tip: _Tip, heads: Sequence[Head], next_cursor: int) -> int:
        chunks = [heads[i : i + self._max_heads] for i in range(0, len(heads), self._max_heads)]
        for index, chunk in enumerate(chunks or [()]):
            # Only the last one moves the cursor: a crash half-way rescans, never skips.
            last = index == max(len(chunks), 1) - 1
            tip = await self._publish(tip, tuple(chunk), next_cursor if last else tip.cursor)
        return max(len(chunks), 1)

    async def _publish(self, tip: _Tip, heads: tuple[Head, ...], cursor: int) -> _Tip:
        checkpoint = Checkpoint(
            number=tip.number + 1,
            prev=tip.digest,
            cursor=cursor,
            taken_at=datetime.now(UTC).isoformat(timespec="milliseconds"),
            key_id=self._key_id,
            heads=heads,
        )
        body = checkpoint.body()
        headers = {
            SIGNATURE_HEADER: signature_of(self._key, body),
            Header.MSG_ID: digest(body).hex(),
            # Chain onto the tip we read, or fail: two ledgers must not fork the chain.
            Header.EXPECTED_LAST_SUBJECT_SEQUENCE: str(tip.number),
        }
        try:
            ack = await self._js.publish(
                CHECKPOINT_SUBJECT,
                body,
                timeout=self._publish_timeout_s,
                stream=AUDIT_CHECKPOINTS_STREAM,
                headers=headers,
            )
        except APIError as exc:
            self._tip = None
            if exc.err_code == _WRONG_LAST_SEQUENCE:
                _LOGGER.info("another ledger checkpointed first; chaining onto its checkpoint")
            raise
        except BaseException:
            # The publication may or may not have landed: read the tip again next time.
            self._tip = None
            raise
        if ack.seq != checkpoint.number:
            self._tip = None
            raise CheckpointError(
                f"checkpoint {checkpoint.number} was stored at sequence {ack.seq}; another "
                f"subject shares the stream {AUDIT_CHECKPOINTS_STREAM}"
            )
        self._tip = _Tip(checkpoint.number, digest(body), cursor)
        self.published += 1
        _LOGGER.info("checkpoint %d: %d stream heads", checkpoint.number, len(heads))
        return self._tip

    async def _read_tip(self) -> _Tip:
        """The newest checkpoint on the stream; an unreadable one is chained onto by its digest
        and scanned after from the start (``audit verify`` reports it)."""
        try:
            last = await self._js.get_last_msg(AUDIT_CHECKPOINTS_STREAM, CHECKPOINT_SUBJECT)
        except NotFoundError:
            self._tip = _Tip(0, GENESIS, 0)
            return self._tip
        number = last.seq or 0
        data = last.data or b""
        try:
            cursor = parse(data).cursor
        except CheckpointFormatError as exc:
            _LOGGER.error("checkpoint %d cannot be read (%s); rescanning every stream", number, exc)
            cursor = 0
        self._tip = _Tip(number, digest(data), cursor)
        return self._tip
