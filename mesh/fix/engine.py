"""Asyncio bridge around QuickFIX: settings, callbacks, connector lifecycle and sending."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import sysconfig
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

import quickfix

from brokermesh.mesh.fix.messages import BEGIN_STRING, FixError, msg_type

_logger = logging.getLogger(__name__)

BROKER_COMP_ID = "BROKERMESH"
DATA_DICTIONARY_FILE = "FIX44.xml"
LOGOUT_TIMEOUT_S = 3.0
ACCEPTOR_POLL_INTERVAL_S = 0.002
_LIFECYCLE = threading.Lock()


class FixConfigError(FixError):
    """The engine cannot be configured, e.g. the FIX 4.4 data dictionary is not installed."""


class FixSessionError(FixError):
    """A FIX session cannot do what was asked of it."""


class FixNotLoggedOnError(FixSessionError):
    """The FIX session is not logged on, so nothing can be sent on it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FixSessionConfig:
    """One FIX 4.4 session; ``host`` is where an initiator connects (acceptors bind all hosts)."""

    sender_comp_id: str
    target_comp_id: str
    host: str
    port: int
    data_dir: Path
    heartbeat_s: int = 30
    reconnect_interval_s: int = 1

    @property
    def store_path(self) -> Path:
        """Where QuickFIX keeps this session's persistent message store and sequence numbers."""
        return self.data_dir / "store"

    @property
    def log_path(self) -> Path:
        """Where QuickFIX writes this session's message and event logs."""
        return self.data_dir / "log"

    def session_id(self) -> quickfix.SessionID:
        """The QuickFIX identity of this session."""
        return quickfix.SessionID(BEGIN_STRING, self.sender_comp_id, self.target_comp_id)


def find_data_dictionary() -> Path:
    """Locate the FIX 4.4 data dictionary installed by quickfix-py under ``share/quickfix``."""
    roots = [Path(sys.prefix), Path(sys.base_prefix)]
    for scheme in (sysconfig.get_default_scheme(), sysconfig.get_preferred_scheme("user")):
        with contextlib.suppress(KeyError):
            roots.append(Path(sysconfig.get_path("data", scheme)))
    for root in roots:
        candidate = root / "share" / "quickfix" / DATA_DICTIONARY_FILE
        if candidate.is_file():
            return candidate
    raise FixConfigError(f"{DATA_DICTIONARY_FILE} not found under share/quickfix of {roots}")


def render_settings(
    sessions: Sequence[FixSessionConfig],
    *,
    connection_type: Literal["initiator", "acceptor"],
    data_dictionary: Path | None = None,
) -> str:
    """Render the QuickFIX settings text for ``sessions`` (fed to ``setFromString``).

    Sequence numbers are never reset on logon, logout or disconnect and every sent message is
    persisted: like a real venue link, a reconnect (or a process restart) resumes the
    sequence so that execution reports sent while the link was down are recovered through a
    ResendRequest instead of being lost. StartTime equal to EndTime (midnight UTC) makes the
    session run around the clock with one sequence reset per day, the venue's daily cycle.
    """
    if not sessions:
        raise FixConfigError("at least one FIX session is needed")
    dictionary = data_dictionary or find_data_dictionary()
    lines = [
        "[DEFAULT]",
        f"ConnectionType={connection_type}",
        "StartTime=00:00:00",
        "EndTime=00:00:00",
        "UseDataDictionary=Y",
        f"DataDictionary={dictionary}",
        "ResetOnLogon=N",
        "ResetOnLogout=N",
        "ResetOnDisconnect=N",
        "PersistMessages=Y",
        "SocketNodelay=Y",
        f"FileLogPath={sessions[0].log_path}",
    ]
    if connection_type == "initiator":
        interval = min(session.reconnect_interval_s for session in sessions)
        lines.append(f"ReconnectInterval={interval}")
    for session in sessions:
        lines.extend(_session_lines(session, connection_type))
    return "\n".join(lines) + "\n"


def _session_lines(
    session: FixSessionConfig, connection_type: Literal["initiator", "acceptor"]
) -> list[str]:
    lines = [
        "",
        "[SESSION]",
        f"BeginString={BEGIN_STRING}",
        f"SenderCompID={session.sender_comp_id}",
        f"TargetCompID={session.target_comp_id}",
        f"HeartBtInt={session.heartbeat_s}",
        f"FileStorePath={session.store_path}",
        f"FileLogPath={session.log_path}",
    ]
    if connection_type == "initiator":
        lines += [f"SocketConnectHost={session.host}", f"SocketConnectPort={session.port}"]
    else:
        lines += [f"SocketAcceptPort={session.port}", "SocketReuseAddress=Y"]
    return lines


class _SessionState:
    """Logon state of one session as seen from the asyncio loop."""

    def __init__(self, config: FixSessionConfig) -> None:
        self.config = config
        self.session_id = config.session_id()
        self.logged_on = asyncio.Event()
        self.logged_out = asyncio.Event()
        self.logged_out.set()

    def mark_logged_on(self) -> None:
        self.logged_out.clear()
        self.logged_on.set()

    def mark_logged_out(self) -> None:
        self.logged_on.clear()
        self.logged_out.set()


class _Bridge(quickfix.Application):
    """QuickFIX callbacks, run on engine threads, forwarded to the owning engine.

    An exception escaping a callback makes the binding call ``Py_Exit(1)``, so every callback
    catches everything except the QuickFIX exceptions the binding translates on purpose.
    """

    def __init__(self, engine: FixEngine) -> None:
        super().__init__()
        self._engine = engine

    def onCreate(self, session_id: quickfix.SessionID) -> None:
        _logger.debug("FIX session created: %s", session_id)

    def onLogon(self, session_id: quickfix.SessionID) -> None:
        self._guarded(self._engine.notify_logon, session_id)

    def onLogout(self, session_id: quickfix.SessionID) -> None:
        self._guarded(self._engine.notify_logout, session_id)

    def toAdmin(self, message: quickfix.Message, session_id: quickfix.SessionID) -> None:
        return None

    def fromAdmin(self, message: quickfix.Message, session_id: quickfix.SessionID) -> None:
        return None

    def toApp(self, message: quickfix.Message, session_id: quickfix.SessionID) -> None:
        if self._guarded(self._engine.suppress_resend, message, session_id):
            raise quickfix.DoNotSend()

    def fromApp(self, message: quickfix.Message, session_id: quickfix.SessionID) -> None:
        self._guarded(self._engine.receive_app_message, message, session_id)

    @staticmethod
    def _guarded(callback: Callable[..., bool | None], *args: object) -> bool:
        try:
            return bool(callback(*args))
        except Exception:
            _logger.exception(
                "QuickFIX callback %s failed", getattr(callback, "__name__", callback)
            )
            return False


class _Driver:
    """Runs a QuickFIX connector's event loop and stops it."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        """Stop the connector; blocks until its threads are gone."""
        raise NotImplementedError


class _ThreadDriver(_Driver):
    """QuickFIX's own thread runs the initiator; SocketInitiator has nothing to race on stop."""

    def __init__(self, connector: quickfix.Initiator) -> None:
        self._connector = connector

    def start(self) -> None:
        self._connector.start()

    def stop(self) -> None:
        self._connector.stop(True)


class _PollDriver(_Driver):
    """A thread of ours runs the acceptor with ``poll()`` and is the one that stops it.

    ``SocketAcceptor.stop()`` closes the listening server from the calling thread while the
    acceptor's own thread, woken by that close, closes and deletes the same server: that
    race segfaults. Polling from one thread which also calls ``stop()`` leaves no other
    thread to race with, and a 2 ms poll interval keeps added latency small.
    """

    def __init__(self, connector: quickfix.Acceptor) -> None:
        self._connector = connector
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._connector.poll()  # the first poll binds the ports, raising if it cannot
        self._thread = threading.Thread(target=self._run, name="quickfix-acceptor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is None:
            self._connector.stop(True)
            return
        self._halt.set()
        self._thread.join()

    def _run(self) -> None:
        try:
            while not self._halt.wait(ACCEPTOR_POLL_INTERVAL_S):
                self._poll_once()
        finally:
            self._connector.stop(True)

    def _poll_once(self) -> None:
        try:
            self._connector.poll()
        except quickfix.FIXException:
            _logger.exception("QuickFIX acceptor poll failed")


class FixEngine:
    """Base of the initiator and the acceptor: lifecycle, logon tracking and sending."""

    _connection_type: Literal["initiator", "acceptor"]

    def __init__(self, sessions: Sequence[FixSessionConfig]) -> None:
        targets = [session.target_comp_id for session in sessions]
        if len(set(targets)) != len(targets):
            raise FixConfigError(f"each session needs its own TargetCompID, got {targets}")
        self._configs = tuple(sessions)
        self._states: dict[str, _SessionState] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._driver: _Driver | None = None
        self._keepalive: tuple[object, ...] = ()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def sessions(self) -> tuple[str, ...]:
        """The TargetCompIDs of this engine's sessions, which name them in every method."""
        return tuple(session.target_comp_id for session in self._configs)

    async def start(self) -> None:
        """Create the QuickFIX connector and start its threads.

        Runs on the loop thread, uncancellable, so a started connector always has an owner.
        """
        if self._driver is not None:
            raise FixSessionError("the FIX engine is already running")
        self._loop = asyncio.get_running_loop()
        self._states = {cfg.target_comp_id: _SessionState(cfg) for cfg in self._configs}
        with _LIFECYCLE:
            self._driver = self._open_driver()

    async def stop(self) -> None:
        """Log every session out, then stop and destroy the connector; always waits for it."""
        if self._driver is None:
            return
        holder = [self._driver]
        self._driver = None
        try:
            await self._logout_all()
        finally:
            await _finish_in_thread(lambda: self._close_driver(holder))

    async def wait_logged_on(self, session: str, timeout_s: float = 10.0) -> None:
        """Wait until ``session`` (a TargetCompID) is logged on."""
        state = self._state(session)
        try:
            async with asyncio.timeout(timeout_s):
                await state.logged_on.wait()
        except TimeoutError:
            raise FixNotLoggedOnError(f"{session} not logged on within {timeout_s}s") from None

    def is_logged_on(self, session: str) -> bool:
        """Whether QuickFIX reports ``session`` as logged on right now."""
        found = quickfix.Session.lookupSession(self._state(session).session_id)
        return self._driver is not None and found is not None and found.isLoggedOn()

    def next_sender_seq_num(self, session: str) -> int:
        """The MsgSeqNum the next message sent on ``session`` will carry."""
        found = quickfix.Session.lookupSession(self._state(session).session_id)
        if found is None:
            raise FixSessionError(f"no QuickFIX session for {session}")
        return int(found.getExpectedSenderNum())

    async def send(self, session: str, message: quickfix.Message) -> None:
        """Send ``message`` on ``session``; returns once QuickFIX has accepted it for sending."""
        if not self.is_logged_on(session):
            raise FixNotLoggedOnError(f"FIX session to {session} is not logged on")
        if not self._send_to_target(session, message):
            raise FixSessionError(f"QuickFIX refused to send on the session to {session}")

    def _send_to_target(self, session: str, message: quickfix.Message) -> bool:
        try:
            return bool(quickfix.Session.sendToTarget(message, self._state(session).session_id))
        except quickfix.SessionNotFound as exc:
            raise FixNotLoggedOnError(f"no QuickFIX session for {session}") from exc

    def _state(self, session: str) -> _SessionState:
        try:
            return self._states[session]
        except KeyError:
            raise FixSessionError(f"unknown FIX session {session!r}") from None

    def _open_driver(self) -> _Driver:
        try:
            driver = self._create_driver()
        except quickfix.FIXException as exc:
            self._keepalive = ()
            raise FixConfigError(f"QuickFIX rejected the configuration: {exc}") from exc
        try:
            driver.start()
        except quickfix.FIXException as exc:
            self._close_driver([driver], locked=True)
            raise FixSessionError(f"cannot start the FIX {self._connection_type}: {exc}") from exc
        return driver

    def _create_driver(self) -> _Driver:
        for config in self._configs:
            config.store_path.mkdir(parents=True, exist_ok=True)
            config.log_path.mkdir(parents=True, exist_ok=True)
        settings = quickfix.SessionSettings()
        settings.setFromString(
            render_settings(self._configs, connection_type=self._connection_type)
        )
        application = _Bridge(self)
        store = quickfix.FileStoreFactory(settings)
        logs = quickfix.FileLogFactory(settings)
        self._keepalive = (settings, application, store, logs)
        if self._connection_type == "initiator":
            return _ThreadDriver(quickfix.SocketInitiator(application, store, settings, logs))
        return _PollDriver(quickfix.SocketAcceptor(application, store, settings, logs))

    def _close_driver(self, holder: list[_Driver], *, locked: bool = False) -> None:
        """Stop the connector and drop the last references to it and its helpers right here.

        Every start, stop and destruction of a QuickFIX connector happens under
        ``_LIFECYCLE``, on a known thread, never racing another connector's.
        """
        with contextlib.nullcontext() if locked else _LIFECYCLE:
            try:
                holder[0].stop()
            finally:
                holder.clear()
                self._keepalive = ()

    async def _logout_all(self) -> None:
        for state in self._states.values():
            found = quickfix.Session.lookupSession(state.session_id)
            if found is not None and found.isLoggedOn():
                found.logout("shutting down")
        waits = [state.logged_out.wait() for state in self._states.values()]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(LOGOUT_TIMEOUT_S):
                await asyncio.gather(*waits)

    def _post(self, callback: Callable[..., object], *args: object) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(callback, *args)

    def notify_logon(self, session_id: quickfix.SessionID) -> None:
        """Engine thread: record that a session logged on."""
        _logger.info("FIX session %s logged on", session_id)
        self._post(self._states[target_of(session_id)].mark_logged_on)

    def notify_logout(self, session_id: quickfix.SessionID) -> None:
        """Engine thread: record that a session logged out or lost its connection."""
        _logger.info("FIX session %s logged out", session_id)
        self._post(self._states[target_of(session_id)].mark_logged_out)

    def suppress_resend(self, message: quickfix.Message, session_id: quickfix.SessionID) -> bool:
        """Engine thread: whether an outgoing application message must not be sent."""
        return False

    def receive_app_message(
        self, message: quickfix.Message, session_id: quickfix.SessionID
    ) -> None:
        """Engine thread: handle an inbound application message."""
        _logger.warning("ignoring FIX message type %r on %s", msg_type(message), session_id)


def target_of(session_id: quickfix.SessionID) -> str:
    """The TargetCompID of ``session_id``, which names the session in every engine method."""
    return str(session_id.getTargetCompID().getString())


async def _finish_in_thread(action: Callable[[], None]) -> None:
    """Run a blocking QuickFIX call in a worker thread and wait for it even when cancelled."""
    done = asyncio.ensure_future(asyncio.to_thread(action))
    try:
        await asyncio.shield(done)
    except asyncio.CancelledError:
        await asyncio.wait([done])
        raise
