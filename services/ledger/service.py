"""The ledger process: outbox relay, checkpoints, live projection and order queries in one App.

Queries need only PostgreSQL, so the gRPC server serves them from the moment
the pool is open. NATS is reached from a background task that connects with
unlimited reconnects and then runs the relay and the checkpointer; while NATS
is down that task simply waits and the outbox holds the events. The
checkpointer signs with a key read (or, on first start, generated) at start,
so a ledger that cannot sign does not start at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from pathlib import Path

import asyncpg
import grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nats.aio.client import Client as NatsClient
from nats.js.client import JetStreamContext

from brokermesh.mesh import database
from brokermesh.mesh.config import ServiceSettings
from brokermesh.mesh.errors import ConfigError
from brokermesh.mesh.jetstream import asset_mode, ensure_jetstream
from brokermesh.services.ledger.checkpoints import (
    PRIVATE_KEY_FILE,
    Checkpointer,
    ensure_signing_key,
)
from brokermesh.services.ledger.manifest import MANIFEST
from brokermesh.services.ledger.query import OrderQueryService
from brokermesh.services.ledger.relay import OutboxRelay
from brokermesh.trading.v1 import order_query_pb2_grpc

_LOGGER = logging.getLogger(__name__)

#: Seconds between repeated NATS connection warnings while the server is down.
_NATS_WARNING_INTERVAL_S = 30.0


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class LedgerSettings(ServiceSettings):
    """The ledger's settings (``BROKERMESH_LEDGER_<FIELD>``) on top of the shared ones."""

    #: gRPC port of OrderQueryService; the manifest's port unless overridden.
    port: int = MANIFEST.grpc_port
    #: Outbox rows read and published per pass.
    relay_batch_size: int = 256
    #: Poll interval of the relay, the safety net under LISTEN/NOTIFY.
    relay_poll_interval_ms: int = 500
    #: How long to wait for one JetStream ack before the pass stops and retries later.
    publish_timeout_ms: int = 5_000
    #: Most PostgreSQL connections the query service holds.
    query_pool_size: int = 8
    #: "manage" creates and updates the JetStream assets; "verify" only checks them (an
    #: operator owns them, as nack does in Kubernetes).
    jetstream_assets: str = "manage"
    #: Interval between checkpoints of the stream heads on JetStream; one more is taken at
    #: shutdown.
    checkpoint_interval_ms: int = 10_000
    #: PEM file with the Ed25519 key checkpoints are signed with, generated with its public
    #: half (``checkpoint-signing.pub.pem``) beside it when missing. Empty means
    #: ``<data_dir>/keys/checkpoint-signing.pem``.
    checkpoint_key_path: Path = Path()
    #: DSN of the relay's own connection; empty means ``database_url``. The relay LISTENs and
    #: holds a session advisory lock so that one ledger publishes at a time, and both need a
    #: real session: where ``database_url`` goes through a transaction-mode pooler, point this
    #: at the primary itself.
    relay_database_url: str = ""

    def __post_init__(self) -> None:
        try:
            asset_mode(self.jetstream_assets)
        except ValueError as exc:
            raise ConfigError(str(exc), field="jetstream_assets") from exc
        if self.checkpoint_interval_ms <= 0:
            raise ConfigError(
                f"checkpoint_interval_ms={self.checkpoint_interval_ms} must be positive",
                field="checkpoint_interval_ms",
            )
        if self.checkpoint_key_path == Path():
            derived = self.data_dir / "keys" / PRIVATE_KEY_FILE
            object.__setattr__(self, "checkpoint_key_path", derived)

    @property
    def relay_dsn(self) -> str:
        """The DSN the outbox relay connects with."""
        return self.relay_database_url or self.database_url


class LedgerApp:
    """The :class:`brokermesh.mesh.server.App` of the ledger.

    ``register`` may be called before ``start`` (the server bootstrap does):
    the pool object exists from ``register`` on and opens in ``start``.
    ``stop`` cancels the relay and the checkpointer, takes a last checkpoint
    and closes the connections; call it once.
    """

    def __init__(self, settings: LedgerSettings) -> None:
        self._settings = settings
        self._pool: asyncpg.Pool | None = None
        self._nc = NatsClient()
        self._bus_task: asyncio.Task[None] | None = None
        self._nats_warned_at = float("-inf")
        self._stopping = False
        #: The running relay once NATS is connected; None before.
        self.relay: OutboxRelay | None = None
        #: The checkpointer once NATS is connected; None before.
        self.checkpointer: Checkpointer | None = None

    def register(self, server: grpc.aio.Server) -> None:
        order_query_pb2_grpc.add_OrderQueryServiceServicer_to_server(
            OrderQueryService(self._ensure_pool()), server
        )

    async def start(self) -> None:
        key = ensure_signing_key(self._settings.checkpoint_key_path)
        pool = self._ensure_pool()
        await pool
        # The relay owns its own connections; it must never hold up serving queries.
        self._bus_task = asyncio.create_task(self._bus_forever(pool, key), name="ledger-bus")
        _LOGGER.info("ledger started (NATS %s)", self._settings.nats_url)

    async def stop(self) -> None:
        task, self._bus_task = self._bus_task, None
        self._stopping = True
        try:
            if task is not None:
                await _cancel(task)
            await self._last_checkpoint()
        finally:
            # Cancelled mid-connect or mid-relay alike: the client must not outlive us.
            with contextlib.suppress(Exception):
                await asyncio.shield(self._nc.close())
            if self._pool is not None:
                await self._pool.close()
        _LOGGER.info("ledger stopped")

    def _ensure_pool(self) -> asyncpg.Pool:
        # Created unopened so register() can hand it to the servicer before start().
        if self._pool is None:
            self._pool = database.create_pool(
                self._settings.database_url,
                min_size=1,
                max_size=self._settings.query_pool_size,
                timeout=10,
            )
        return self._pool

    async def _bus_forever(self, pool: asyncpg.Pool, key: Ed25519PrivateKey) -> None:
        """Connect to NATS (waiting as long as it takes), ensure the streams, then relay and
        checkpoint until cancelled."""
        settings = self._settings
        await self._nc.connect(
            servers=[settings.nats_url],
            name="ledger",
            max_reconnect_attempts=-1,
            error_cb=self._on_nats_error,
            disconnected_cb=self._on_disconnected,
            reconnected_cb=_on_reconnected,
        )
        _LOGGER.info("connected to NATS %s", settings.nats_url)
        js = self._nc.jetstream(timeout=settings.publish_timeout_ms / 1000)
        await self._ensure_stream(js)
        self.checkpointer = Checkpointer(
            pool,
            js,
            key,
            interval_s=settings.checkpoint_interval_ms / 1000,
            publish_timeout_s=settings.publish_timeout_ms / 1000,
        )
        self.relay = OutboxRelay(
            settings.relay_dsn,
            self._nc,
            js,
            batch_size=settings.relay_batch_size,
            poll_interval_s=settings.relay_poll_interval_ms / 1000,
            publish_timeout_s=settings.publish_timeout_ms / 1000,
        )
        # The chain starts (or resumes) before the relay publishes anything.
        await self.checkpointer.attempt()
        async with asyncio.TaskGroup() as group:
            group.create_task(self.checkpointer.run(), name="ledger-checkpoints")
            group.create_task(self.relay.run(), name="ledger-outbox-relay")

    async def _last_checkpoint(self) -> None:
        """Checkpoint what the relay published last, so a restart leaves no stream unanchored."""
        if self.checkpointer is None or not self._nc.is_connected:
            return
        try:
            async with asyncio.timeout(self._settings.publish_timeout_ms / 1000):
                await self.checkpointer.attempt()
        except TimeoutError:
            _LOGGER.warning("no checkpoint at shutdown: JetStream did not answer in time")

    async def _ensure_stream(self, js: JetStreamContext) -> None:
        """Create or confirm the JetStream assets, retrying while JetStream is unavailable."""
        backoff_s = 0.5
        while True:
            try:
                await ensure_jetstream(js, self._settings.jetstream_assets)
                return
            except Exception as exc:  # any failure here is retried, loudly
                _LOGGER.warning(
                    "cannot ensure the JetStream assets (%s: %s); retrying in %.1f s",
                    type(exc).__name__,
                    exc,
                    backoff_s,
                )
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, 30.0)

    async def _on_nats_error(self, exc: Exception) -> None:
        # Every failed reconnect attempt reports here; one warning per interval is enough.
        now = time.monotonic()
        if now - self._nats_warned_at >= _NATS_WARNING_INTERVAL_S:
            self._nats_warned_at = now
            _LOGGER.warning("NATS %s: %s", self._settings.nats_url, exc or type(exc).__name__)
        else:
            _LOGGER.debug("NATS %s: %s", self._settings.nats_url, exc)

    async def _on_disconnected(self) -> None:
        # Our own close at shutdown disconnects too; only an unplanned loss is news.
        if not self._stopping:
            _LOGGER.warning("disconnected from NATS; the relay waits, queries go on")


async def _cancel(task: asyncio.Task[None], *, attempts: int = 40) -> None:
    """Cancel ``task`` and wait for it, repeating the request if a library swallowed it
    (Python 3.11's ``wait_for`` can); gives up, loudly, after ``attempts`` quarter seconds."""
    for _ in range(attempts):
        task.cancel()
        await asyncio.wait({task}, timeout=0.25)
        if task.done():
            break
    else:
        _LOGGER.error("task %s did not stop after %d cancellations", task.get_name(), attempts)
        return
    if not task.cancelled() and task.exception() is not None:
        _LOGGER.error("task %s ended with an error", task.get_name(), exc_info=task.exception())


async def _on_reconnected() -> None:
    _LOGGER.info("reconnected to NATS; the relay resumes")
