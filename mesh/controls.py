"""Trading controls as the data plane sees them: watched from NATS, never waited on.

The control plane stores the current :class:`TradingControls` under key
``trading`` in the ``controls`` key-value bucket. Each data-plane service
keeps a :class:`ControlsWatcher`, which follows that key in a background task
and answers ``halted`` and ``mode`` from memory, so checking the kill switch
costs no I/O on the order path.

The watcher keeps trading safe when the control plane or NATS is not there,
and fails closed when it cannot know the controls:

* Every value it accepts is written to ``<data_dir>/controls.last-known-good.binpb``
  (temporary file plus ``os.replace``, so a crash never leaves half a file),
  and a restart while NATS is down starts from that file and keeps trading on it.
* With no such file the controls are unknown, and an unknown kill switch is
  an engaged one: ``halted`` is True (with a reason saying the controls are not
  yet known) and ``mode`` is EMERGENCY until the watch has synced with the
  bucket. A key that was never written syncs as the built-in defaults (NORMAL,
  not halted); that is a positive answer from the bucket, not an absence.
* ``start`` waits up to ``first_sync_s`` for that first sync when nothing is
  known, so a service started next to a healthy NATS does not refuse its
  first orders; it never waits longer, and never waits when a last known good
  value was loaded. Health is not tied to the controls: a service that does
  not know them serves and refuses every order with the reason above.
* Within one watch session an update that cannot be parsed, names an unknown
  mode, is older than a revision the session already delivered, or deletes
  the key is ignored with a WARNING and the last known good value is kept: a
  bad write must not silently undo an operator's halt.
* The first value a fresh watch session delivers is authoritative, whatever
  revision it has: after the bucket was recreated (NATS data lost) its
  revisions restart at 1, and the held value's higher revision must not
  outrank the bucket. A lower revision seen by a re-read within a session is
  checked against the bucket's creation time, and a recreated bucket starts a
  new session.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
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
from brokermesh.mesh.tasks import cancel_and_wait

_LOGGER = logging.getLogger(__name__)

#: Key-value bucket holding the controls; created by ``brokermesh.mesh.jetstream``.
BUCKET = CONTROLS_BUCKET
#: Key of the serialized :class:`control_pb2.TradingControls` in :data:`BUCKET`.
KEY = "trading"
#: Stream keeping the :class:`control_pb2.ControlChange` records of every change.
AUDIT_STREAM = CONTROL_AUDIT_STREAM
#: Audit records are published to ``control.audit.<change_id>``.
AUDIT_SUBJECT_PREFIX = "control.audit."
#: File, under a service's data directory, holding the last value it accepted.
LAST_KNOWN_GOOD_FILE = "controls.last-known-good.binpb"
#: Reason the controls carry while a watcher knows no value at all.
UNKNOWN_REASON = (
    "controls not yet known (no last known good value and not yet in sync with NATS); "
    "every order is refused until they are"
)

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
    """The value of a key never written: normal, not halted (what the control plane reads too)."""
    return control_pb2.TradingControls(
        trading_halted=False, mode=control_pb2.DEGRADATION_MODE_NORMAL, revision=0
    )


def unknown_controls() -> control_pb2.TradingControls:
    """What a watcher answers before it knows any value: halted, in the most cautious mode."""
    return control_pb2.TradingControls(
        trading_halted=True,
        mode=control_pb2.DEGRADATION_MODE_EMERGENCY,
        reason=UNKNOWN_REASON,
        revision=0,
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


@dataclasses.dataclass(slots=True)
class _Session:
    """One watch of the key, from its start to a reconnect, a failure or a recreated bucket."""

    #: When the bucket's stream was created, as the server reported at the session's start.
    bucket_created: datetime.datetime | None
    #: Highest revision this session has delivered (accepted or not); 0 before the first.
    latest: int = 0
    #: Whether some value in this session was refused.
    refused: bool = False


class ControlsWatcher:
    """Follows the trading controls for one data-plane service.

    ``current``, ``halted`` and ``mode`` read memory only and are safe on the
    hot path. Until a value is known (loaded from the last-known-good file or
    synced from the bucket) they answer :func:`unknown_controls`: halted.
    """

    def __init__(
        self,
        nats_url: str,
        *,
        data_dir: Path,
        service: str,
        resync_s: float = 30.0,
        max_backoff_s: float = 30.0,
        first_sync_s: float = 5.0,
    ) -> None:
        self._nats_url = nats_url
        self._path = Path(data_dir) / LAST_KNOWN_GOOD_FILE
        self._service = service
        # A watch can silently lose its server-side consumer; re-reading the key
        # this often bounds how stale the value can get.
        self._resync_s = resync_s
        self._max_backoff_s = max_backoff_s
        self._first_sync_s = first_sync_s
        #: None while no value is known at all.
        self._current: control_pb2.TradingControls | None = None
        self._synced = False
        self._changed = asyncio.Condition()
        self._rewatch = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def current(self) -> control_pb2.TradingControls:
        """A copy of the controls in force (:func:`unknown_controls` while none is known)."""
        if self._current is None:
            return unknown_controls()
        copy = control_pb2.TradingControls()
        copy.CopyFrom(self._current)
        return copy

    @property
    def halted(self) -> bool:
        """Whether no new order may reach a venue: an operator halted trading, or the
        controls are not known yet."""
        return self._current is None or self._current.trading_halted

    @property
    def mode(self) -> Mode:
        """The degradation mode in force; EMERGENCY while the controls are not known."""
        if self._current is None:
            return control_pb2.DEGRADATION_MODE_EMERGENCY
        return self._current.mode

    @property
    def known(self) -> bool:
        """Whether a real value is in force: loaded from disk or delivered by the bucket."""
        return self._current is not None

    @property
    def synced(self) -> bool:
        """Whether the watch has delivered the stored value since the last (re)connect."""
        return self._synced

    async def start(self) -> None:
        """Load the last known good value and start watching in the background.

        With no last known good value, waits up to ``first_sync_s`` for the
        first sync, then returns either way (halted if it did not come).
        Calling it again does nothing.
        """
        if self._task is not None:
            return
        self._current = self._load_last_known_good()
        self._task = asyncio.create_task(self._run(), name=f"controls-watcher[{self._service}]")
        if self._current is not None or self._first_sync_s <= 0:
            return
        try:
            async with asyncio.timeout(self._first_sync_s), self._changed:
                await self._changed.wait_for(lambda: self._current is not None)
        except TimeoutError:
            _LOGGER.warning(
                "%s: controls still unknown after %.1fs; refusing every order until they are",
                self._service,
                self._first_sync_s,
            )

    async def stop(self) -> None:
        """Stop watching; the last value stays readable."""
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait(task)

    async def wait_for(self, predicate: Predicate, timeout_s: float) -> control_pb2.TradingControls:
        """Wait until ``predicate(current)`` holds; raise TimeoutError after ``timeout_s``."""
        async with asyncio.timeout(timeout_s), self._changed:
            await self._changed.wait_for(lambda: predicate(self.current))
            return self.current

    def _load_last_known_good(self) -> control_pb2.TradingControls | None:
        """The persisted value, or None when there is none or it is unreadable."""
        try:
            data = self._path.read_bytes()
        except FileNotFoundError:
            _LOGGER.info(
                "%s: no last known good controls at %s; halted until in sync with NATS",
                self._service,
                self._path,
            )
            return None
        except OSError as exc:
            _LOGGER.warning(
                "%s: cannot read %s (%s); halted until in sync with NATS",
                self._service,
                self._path,
                exc,
            )
            return None
        try:
            controls = decode_controls(data, None)
        except InvalidControls as exc:
            _LOGGER.warning(
                "%s: ignoring unreadable %s (%s); halted until in sync with NATS",
                self._service,
                self._path,
                exc,
            )
            return None
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
        """One watch session: follow the key until the client reconnects or the bucket
        turns out to be recreated; raise if the watch fails.

        After a server restart the watch's consumer is gone, and the client
        would only notice after missed heartbeats (10 s or more); a new watch
        after each reconnect delivers the stored value at once.
        """
        session = _Session(bucket_created=(await kv.status()).stream_info.created)
        watcher = await kv.watch(KEY)
        tasks = {
            asyncio.create_task(self._follow(watcher, session, kv)),
            asyncio.create_task(self._resync_loop(kv, session)),
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

    async def _follow(self, watcher: KeyValue.KeyWatcher, session: _Session, kv: KeyValue) -> None:
        """Apply what the watch delivers; the watch ending is a failure."""
        async for entry in watcher:
            if entry is None:
                # The watch's marker: everything stored so far has been delivered.
                await self._mark_synced(session)
                continue
            await self._apply(entry, session, kv)
        raise ConnectionError("controls watch ended")

    async def _resync_loop(self, kv: KeyValue, session: _Session) -> None:
        """Re-read the key every ``resync_s``, in case the watch silently missed an update."""
        wait_s = self._resync_s
        while True:
            await asyncio.sleep(wait_s)
            try:
                await self._resync(kv, session)
            except nats.errors.Error as exc:
                # Most likely a reconnect in progress, which renews the watch anyway.
                _LOGGER.debug("%s: controls resync failed: %s", self._service, exc)
                wait_s = min(1.0, self._resync_s)
                continue
            wait_s = self._resync_s

    async def _resync(self, kv: KeyValue, session: _Session) -> None:
        """Read the key directly and apply it like a watched update."""
        try:
            entry = await kv.get(KEY)
        except nats.js.errors.KeyNotFoundError:
            return
        await self._apply(entry, session, kv)

    async def _mark_synced(self, session: _Session) -> None:
        if self._current is None:
            if session.refused:
                # The bucket holds only values we refused: nothing positive to go on.
                _LOGGER.warning(
                    "%s: the controls bucket holds no usable value; halted until an "
                    "operator sets the controls",
                    self._service,
                )
            else:
                # The key was never written: the bucket's answer is the defaults.
                await self._accept(default_controls())
        if not self._synced:
            self._synced = True
            _LOGGER.info(
                "%s: controls watch in sync at revision %d", self._service, self.current.revision
            )

    async def _apply(self, entry: KeyValue.Entry, session: _Session, kv: KeyValue) -> None:
        """Accept ``entry`` if it is a valid value not older than this session's latest."""
        revision = int(entry.revision or 0)
        first = session.latest == 0
        if not first:
            if revision == session.latest:
                return  # Already handled; resyncs see it again.
            if revision < session.latest:
                if await self._bucket_recreated(kv, session):
                    return
                self._refuse(session, revision, f"older than revision {session.latest}")
                return
        session.latest = revision
        if entry.operation in (KV_DEL, KV_PURGE):
            self._refuse(session, revision, f"{entry.operation} of the key is not a control change")
            return
        try:
            controls = decode_controls(entry.value or b"", revision)
        except InvalidControls as exc:
            self._refuse(session, revision, str(exc))
            return
        if controls == self._current:
            return
        held = self._current
        if first and held is not None and revision < held.revision:
            _LOGGER.warning(
                "%s: the controls bucket is at revision %d, below the held revision %d "
                "(recreated, or restored from an older copy); its value is authoritative",
                self._service,
                revision,
                held.revision,
            )
        await self._accept(controls)

    async def _bucket_recreated(self, kv: KeyValue, session: _Session) -> bool:
        """Whether the bucket's stream is not the one this session started on; if it is
        not, end the session so that a fresh watch delivers the new bucket's value."""
        try:
            created = (await kv.status()).stream_info.created
        except nats.errors.Error as exc:
            _LOGGER.debug("%s: cannot read the controls bucket's status: %s", self._service, exc)
            return False
        if created == session.bucket_created:
            return False
        _LOGGER.warning(
            "%s: the controls bucket was recreated (created %s, was %s); watching it afresh",
            self._service,
            created,
            session.bucket_created,
        )
        self._rewatch.set()
        return True

    def _refuse(self, session: _Session, revision: int, why: str) -> None:
        session.refused = True
        _LOGGER.warning(
            "%s: ignoring controls update at revision %d: %s; keeping %s",
            self._service,
            revision,
            why,
            "no value (halted)" if self._current is None else f"revision {self._current.revision}",
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
        self, before: control_pb2.TradingControls | None, after: control_pb2.TradingControls
    ) -> None:
        fields: dict[str, Any] = {
            "halted": after.trading_halted,
            "mode": mode_name(after.mode),
            "revision": after.revision,
        }
        was = (
            "unknown"
            if before is None
            else f"halted={before.trading_halted} mode={mode_name(before.mode)}"
        )
        _LOGGER.info(
            "%s: trading controls halted=%s mode=%s (was %s), revision %d by %s: %s",
            self._service,
            after.trading_halted,
            mode_name(after.mode),
            was,
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
