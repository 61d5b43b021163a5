"""Trading controls as the data plane sees them: watched from NATS, never waited on.

The control plane stores the current :class:`TradingControls` under key
``trading`` in the ``controls`` key-value bucket. Each data-plane service
keeps a :class:`ControlsWatcher`, which follows that key in a background task
and answers ``halted`` and ``mode`` from memory, so checking the kill switch
costs no I/O on the order path.

The watcher is built to keep trading safe when the control plane or NATS is
not there:

* Starting never blocks: connecting and watching happen in a background task
  that retries forever with backoff.
* Every value it accepts is written to ``<data_dir>/controls.last-known-good.binpb``
  (temporary file plus ``os.replace``, so a crash never leaves half a file),
  and a restart while NATS is down starts from that file.
* With no value at all, it starts from the built-in defaults: NORMAL mode,
  trading not halted. A control-plane outage must never block healthy
  data-plane traffic, so halting requires a positive signal from an operator;
  the absence of one means "carry on".
* An update that cannot be parsed, names an unknown mode, is older than the
  value held, or deletes the key is ignored with a WARNING and the last known
  good value is kept: a bad write must not silently undo an operator's halt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nats.errors
import nats.js.errors
from google.protobuf.message import DecodeError
from nats.aio.client import Client as NatsClient
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

from brokermesh.control.v1 import control_pb2
from brokermesh.mesh.jetstream import CONTROL_AUDIT_STREAM, CONTROLS_BUCKET

_LOGGER = logging.getLogger(__name__)

#: Key-value bucket holding the controls; created by ``brokermesh.mesh.jetstream``.
BUCKET = CONTROLS_BUCKET
#: Key of the serialized :class:`control_pb2.TradingControls` in :data:`BUCKET`.
KEY = "trading"
#: Stream keeping one :class:`control_pb2.ControlChange` per change.
AUDIT_STREAM = CONTROL_AUDIT_STREAM
#: Audit records are published to ``control.audit.<change_id>``.
AUDIT_SUBJECT_PREFIX = "control.audit."
#: File, under a service's data directory, holding the last value it accepted.
LAST_KNOWN_GOOD_FILE = "controls.last-known-good.binpb"

_VALID_MODES = frozenset(
    value
    for value in control_pb2.DegradationMode.values()
    if value != control_pb2.DEGRADATION_MODE_UNSPECIFIED
)

#: First delay before a failed watch is retried; it doubles up to ``max_backoff_s``.
_FIRST_BACKOFF_S = 0.5

Mode = control_pb2.DegradationMode
Predicate = Callable[[control_pb2.TradingControls], bool]


class InvalidControls(ValueError):
    """A stored value that is not a usable :class:`control_pb2.TradingControls`."""


def default_controls() -> control_pb2.TradingControls:
    """The built-in value used before any control was ever set: normal, not halted."""
    return control_pb2.TradingControls(
        trading_halted=False, mode=control_pb2.DEGRADATION_MODE_NORMAL, revision=0
    )


def decode_controls(data: bytes, revision: int | None) -> control_pb2.TradingControls:
    """Parse and check a stored value; ``revision`` is the key-value revision it was read at.

    The revision inside bytes read from the bucket is not trusted: a writer
    cannot know the revision its own write will get, so the reader sets it.
    ``None`` keeps the stored one (the last-known-good file, written by a reader).
    """
    controls = control_pb2.TradingControls()
    try:
        controls.ParseFromString(data)
    except DecodeError as exc:
        raise InvalidControls(f"not a TradingControls: {exc}") from exc
    # Empty or foreign bytes can parse as a message with every field unset; an
    # unset or unknown mode is how such a value shows itself.
    if controls.mode not in _VALID_MODES:
        raise InvalidControls(f"no valid degradation mode ({controls.mode})")
    if revision is not None:
        controls.revision = revision
    return controls


def mode_name(mode: Mode) -> str:
    """``DEGRADATION_MODE_REDUCED`` -> ``REDUCED``, for log lines."""
    name = control_pb2.DegradationMode.Name(mode)
    return name.removeprefix("DEGRADATION_MODE_")


async def connect(
    nc: NatsClient, nats_url: str, *, name: str, on_reconnected: Callable[[], None] | None = None
) -> None:
    """Connect ``nc`` to ``nats_url``, reconnecting forever after any outage.

    ``max_reconnect_attempts=-1`` also makes the first connect wait for the
    server instead of failing, so callers that must not block run this in a
    task of its own. ``on_reconnected`` runs after each successful reconnect.
    """
    failures = 0

    async def on_error(exc: Exception) -> None:
        nonlocal failures
        failures += 1
        # One WARNING per outage; the retries that follow every few seconds go to DEBUG.
        level = logging.WARNING if failures == 1 else logging.DEBUG
        _LOGGER.log(level, "%s: NATS error: %s", name, exc or type(exc).__name__)

    async def on_disconnected() -> None:
        # A deliberate close also reports a disconnect; only a lost connection is news.
        if not nc.is_closed:
            _LOGGER.warning("%s: disconnected from NATS", name)

    async def reconnected() -> None:
        nonlocal failures
        failures = 0
        _LOGGER.info("%s: reconnected to NATS", name)
        if on_reconnected is not None:
            on_reconnected()

    await nc.connect(
        servers=[nats_url],
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=1,
        connect_timeout=2,
        error_cb=on_error,
        disconnected_cb=on_disconnected,
        reconnected_cb=reconnected,
    )
    failures = 0


class ControlsWatcher:
    """Follows the trading controls for one data-plane service.

    ``current``, ``halted`` and ``mode`` read memory only and are safe on the
    hot path. ``start`` returns at once; the first value comes from the
    last-known-good file, or the defaults, until NATS delivers one.
    """

    def __init__(
        self,
        nats_url: str,
        *,
        data_dir: Path,
        service: str,
        resync_s: float = 30.0,
        max_backoff_s: float = 30.0,
    ) -> None:
        self._nats_url = nats_url
        self._path = Path(data_dir) / LAST_KNOWN_GOOD_FILE
        self._service = service
        # A watch can silently lose its server-side consumer; re-reading the key
        # this often bounds how stale the value can get.
        self._resync_s = resync_s
        self._max_backoff_s = max_backoff_s
        self._current = default_controls()
        self._rejected_revision = 0
        self._synced = False
        self._changed = asyncio.Condition()
        self._rewatch = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def current(self) -> control_pb2.TradingControls:
        """A copy of the controls in force."""
        copy = control_pb2.TradingControls()
        copy.CopyFrom(self._current)
        return copy

    @property
    def halted(self) -> bool:
        """Whether an operator halted trading: no new order may reach a venue."""
        return self._current.trading_halted

    @property
    def mode(self) -> Mode:
        """The degradation mode in force."""
        return self._current.mode

    @property
    def synced(self) -> bool:
        """Whether the watch has delivered the stored value since the last (re)connect."""
        return self._synced

    async def start(self) -> None:
        """Load the last known good value and start watching in the background."""
        if self._task is not None:
            return
        self._current = self._load_last_known_good()
        self._task = asyncio.create_task(self._run(), name=f"controls-watcher[{self._service}]")

    async def stop(self) -> None:
        """Stop watching; the last value stays readable."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def wait_for(self, predicate: Predicate, timeout_s: float) -> control_pb2.TradingControls:
        """Wait until ``predicate(current)`` holds; raise TimeoutError after ``timeout_s``."""
        async with asyncio.timeout(timeout_s), self._changed:
            await self._changed.wait_for(lambda: predicate(self._current))
            return self.current

    def _load_last_known_good(self) -> control_pb2.TradingControls:
        """The persisted value, or the defaults when there is none or it is unreadable."""
        try:
            data = self._path.read_bytes()
        except FileNotFoundError:
            _LOGGER.info(
                "%s: no last known good controls at %s; starting from defaults "
                "(not halted, NORMAL)",
                self._service,
                self._path,
            )
            return default_controls()
        except OSError as exc:
            _LOGGER.warning(
                "%s: cannot read %s (%s); starting from defaults", self._service, self._path, exc
            )
            return default_controls()
        try:
            # The file keeps the bucket revision it was read at, so it stays comparable.
            controls = decode_controls(data, None)
        except InvalidControls as exc:
            _LOGGER.warning(
                "%s: ignoring unreadable %s (%s); starting from defaults",
                self._service,
                self._path,
                exc,
            )
            return default_controls()
        _LOGGER.info(
            "%s: starting from last known good controls: halted=%s mode=%s revision %d",
            self._service,
            controls.trading_halted,
            mode_name(controls.mode),
            controls.revision,
        )
        return controls

    async def _run(self) -> None:
        """Watch until cancelled; any failure starts over after a growing backoff."""
        backoff_s = _FIRST_BACKOFF_S
        while True:
            try:
                await self._watch()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # A watch that had synced was healthy: its failure starts a new outage.
                if self._synced:
                    backoff_s = _FIRST_BACKOFF_S
                _LOGGER.warning(
                    "%s: controls watch failed (%s: %s); retrying in %.1fs",
                    self._service,
                    type(exc).__name__,
                    exc,
                    backoff_s,
                )
            self._synced = False
            await asyncio.sleep(backoff_s)
            backoff_s = min(backoff_s * 2, self._max_backoff_s)

    async def _watch(self) -> None:
        """One connection, renewing the watch after each reconnect, until something fails."""
        nc = NatsClient()
        try:
            await connect(
                nc,
                self._nats_url,
                name=f"{self._service}-controls",
                on_reconnected=self._rewatch.set,
            )
            kv = await nc.jetstream().key_value(BUCKET)
            while True:
                self._rewatch.clear()
                await self._watch_until_reconnect(kv)
                self._synced = False
        finally:
            with contextlib.suppress(Exception):
                await nc.close()

    async def _watch_until_reconnect(self, kv: KeyValue) -> None:
        """Follow the key until the client reconnects; raise if the watch fails.

        After a server restart the watch's consumer is gone, and the client
        would only notice after missed heartbeats (10 s or more); a new watch
        after each reconnect delivers the stored value at once.
        """
        watcher = await kv.watch(KEY)
        tasks = {
            asyncio.create_task(self._follow(watcher)),
            asyncio.create_task(self._resync_loop(kv)),
            asyncio.create_task(self._rewatch.wait()),
        }
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await watcher.stop()
        for task in done:
            error = task.exception()
            if error is not None:
                raise error

    async def _follow(self, watcher: KeyValue.KeyWatcher) -> None:
        """Apply what the watch delivers; the watch ending is a failure."""
        async for entry in watcher:
            if entry is None:
                # The watch's marker: everything stored so far has been delivered.
                self._mark_synced()
                continue
            await self._apply(entry)
        raise ConnectionError("controls watch ended")

    async def _resync_loop(self, kv: KeyValue) -> None:
        """Re-read the key every ``resync_s``, in case the watch silently missed an update."""
        wait_s = self._resync_s
        while True:
            await asyncio.sleep(wait_s)
            try:
                await self._resync(kv)
            except nats.errors.Error as exc:
                # Most likely a reconnect in progress, which renews the watch anyway.
                _LOGGER.debug("%s: controls resync failed: %s", self._service, exc)
                wait_s = min(1.0, self._resync_s)
                continue
            wait_s = self._resync_s

    async def _resync(self, kv: KeyValue) -> None:
        """Read the key directly and apply it like a watched update."""
        try:
            entry = await kv.get(KEY)
        except nats.js.errors.KeyNotFoundError:
            return
        await self._apply(entry)

    def _mark_synced(self) -> None:
        if not self._synced:
            self._synced = True
            _LOGGER.info(
                "%s: controls watch in sync at revision %d", self._service, self._current.revision
            )

    async def _apply(self, entry: KeyValue.Entry) -> None:
        """Accept ``entry`` if it is a newer, valid value; otherwise keep the current one."""
        revision = int(entry.revision or 0)
        if revision == self._current.revision or revision == self._rejected_revision:
            return  # Already applied or already reported; resyncs see it again.
        if revision < self._current.revision:
            self._reject(revision, f"older than the held revision {self._current.revision}")
            return
        if entry.operation in (KV_DEL, KV_PURGE):
            self._reject(revision, f"{entry.operation} of the key is not a control change")
            return
        try:
            controls = decode_controls(entry.value or b"", revision)
        except InvalidControls as exc:
            self._reject(revision, str(exc))
            return
        await self._accept(controls)

    def _reject(self, revision: int, why: str) -> None:
        self._rejected_revision = revision
        _LOGGER.warning(
            "%s: ignoring controls update at revision %d: %s; keeping revision %d",
            self._service,
            revision,
            why,
            self._current.revision,
        )

    async def _accept(self, controls: control_pb2.TradingControls) -> None:
        previous = self._current
        self._current = controls
        self._log_transition(previous, controls)
        try:
            self._persist(controls)
        except OSError as exc:
            # The value is in force either way; only a restart during an outage loses it.
            _LOGGER.warning("%s: cannot persist controls to %s: %s", self._service, self._path, exc)
        async with self._changed:
            self._changed.notify_all()

    def _log_transition(
        self, before: control_pb2.TradingControls, after: control_pb2.TradingControls
    ) -> None:
        fields: dict[str, Any] = {
            "halted": after.trading_halted,
            "mode": mode_name(after.mode),
            "revision": after.revision,
        }
        _LOGGER.info(
            "%s: trading controls halted=%s mode=%s (was halted=%s mode=%s), revision %d by %s: %s",
            self._service,
            after.trading_halted,
            mode_name(after.mode),
            before.trading_halted,
            mode_name(before.mode),
            after.revision,
            after.updated_by.id or "-",
            after.reason or "-",
            extra={"controls": fields},
        )

    def _persist(self, controls: control_pb2.TradingControls) -> None:
        """Write ``controls`` atomically: readers see the old file or the new one, never half.

        The write is synchronous: values change rarely and the file is tiny.
        """
        self._path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".controls-", suffix=".tmp", dir=self._path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(controls.SerializeToString())
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self._path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
