"""A foreground process supervisor: run children, relay their output, restart the ones allowed to.

Built on honcho's public pieces: :class:`honcho.process.Process` starts each
child in a session of its own (``sh -c``, so ``exec`` in the command makes
the service itself the session leader) and turns its output into
:class:`honcho.printer.Message` events; :class:`honcho.printer.Printer`
prints them with the child's name as prefix. honcho's own ``Manager`` stops
everything as soon as any child exits, which is not what a platform with a
control plane wants; this loop decides per child instead:

* a child added with ``restart=True`` that exits is reported and started
  again after a delay that doubles with each quick exit (up to
  ``max_restart_delay_s``) and starts over once it ran ``stable_after_s``;
* any other child that exits stops everything, and its exit code becomes
  the supervisor's;
* :meth:`Supervisor.stop` (or SIGINT/SIGTERM while :meth:`Supervisor.run`
  runs in the main thread) sends SIGTERM to every child's process group,
  then SIGKILL to what is left after ``kill_wait_s``. A child whose pid is
  not known yet when the stop begins gets its SIGTERM as soon as it is.

Each child's output is read by a thread of its own; everything else happens
in the thread that calls :meth:`Supervisor.run`.
"""

from __future__ import annotations

import datetime
import errno
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from honcho.colour import get_colours
from honcho.printer import Message, Printer
from honcho.process import Process

#: Name under which the supervisor prints its own lines.
SYSTEM_NAME = "system"
#: Seconds between SIGTERM and SIGKILL when stopping.
KILL_WAIT_S = 5.0
#: Exit codes a shell reports for a stop by SIGINT and SIGTERM.
SIGNAL_EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}
#: How often the loop looks at timers when no output arrives.
_TICK_S = 0.1


@dataclass(slots=True)
class _Child:
    """One supervised command and the state of its current run."""

    name: str
    process: Any  # honcho.process.Process, untyped
    restart: bool
    pid: int | None = None
    running: bool = False
    started_at: float = 0.0
    restarts: int = 0
    delay_s: float = 0.0
    restart_at: float | None = None
    thread: threading.Thread | None = field(default=None, repr=False)


class Supervisor:
    """Runs commands as child processes until stopped; see the module docstring for the rules.

    Not reusable: :meth:`run` may be called once.
    """

    def __init__(
        self,
        printer: Printer,
        *,
        restart_delay_s: float = 1.0,
        max_restart_delay_s: float = 30.0,
        stable_after_s: float = 60.0,
        kill_wait_s: float = KILL_WAIT_S,
    ) -> None:
        if restart_delay_s <= 0:
            raise ValueError(f"restart_delay_s must be positive, got {restart_delay_s}")
        self.events: queue.Queue[Message] = queue.Queue()
        #: Exit code of the child (or signal) that stopped everything; None if none did.
        self.returncode: int | None = None
        #: Whether SIGINT or SIGTERM stopped the supervisor.
        self.signalled = False
        self._printer = printer
        self._printer.width = len(SYSTEM_NAME)
        self._colours = get_colours()
        self._restart_delay_s = restart_delay_s
        self._max_restart_delay_s = max(max_restart_delay_s, restart_delay_s)
        self._stable_after_s = stable_after_s
        self._kill_wait_s = kill_wait_s
        self._children: dict[str, _Child] = {}
        self._lock = threading.RLock()
        self._stop_requested = threading.Event()
        #: Set by the signal handler, which must not take locks the loop may hold.
        self._signal_received: signal.Signals | None = None
        self._stopping = False
        self._kill_at: float | None = None
        self._killed = False

    def add(
        self,
        name: str,
        command: str,
        *,
        env: Mapping[str, str],
        cwd: str,
        restart: bool = False,
    ) -> None:
        """Add a command to run under ``name``; ``restart`` says what its exit means."""
        if name in self._children or name == SYSTEM_NAME:
            raise ValueError(f"process name {name!r} is taken")
        process = Process(command, name=name, colour=next(self._colours), env=dict(env), cwd=cwd)
        self._children[name] = _Child(name, process, restart, delay_s=self._restart_delay_s)
        self._printer.width = max(self._printer.width, len(name))

    def say(self, text: str) -> None:
        """Print ``text`` as the supervisor, in order with the children's output; thread-safe."""
        self.events.put(_line(SYSTEM_NAME, text))

    def stop(self, returncode: int | None = None) -> None:
        """Ask the loop to stop every child; thread-safe, and only the first code counts."""
        with self._lock:
            if self.returncode is None:
                self.returncode = returncode
        self._stop_requested.set()

    def pid(self, name: str) -> int | None:
        """The pid of ``name``'s current run, or None while it is not running."""
        with self._lock:
            return self._children[name].pid

    def restarts(self, name: str) -> int:
        """How often ``name`` was started again after exiting."""
        with self._lock:
            return self._children[name].restarts

    def run(self, on_started: Callable[[], None] | None = None) -> None:
        """Start every child and supervise until all have stopped.

        Handles SIGINT and SIGTERM while it runs when called from the main
        thread (restoring the previous handlers after). ``on_started`` runs
        once every child has been launched.
        """
        previous = self._install_signal_handlers()
        try:
            for child in self._children.values():
                self._launch(child)
            if on_started is not None:
                on_started()
            while not (self._stopping and self._all_stopped()):
                self._step()
            self._drain()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            for child in self._children.values():
                if child.thread is not None:
                    child.thread.join(timeout=1.0)

    def _step(self) -> None:
        try:
            message = self.events.get(timeout=_TICK_S)
        except queue.Empty:
            message = None
        if message is not None:
            self._handle(message)
        now = time.monotonic()
        if self._stop_requested.is_set() and not self._stopping:
            self._begin_stop(now)
        if self._stopping:
            if not self._killed and self._kill_at is not None and now >= self._kill_at:
                self._killed = True
                self._signal_all(signal.SIGKILL)
            return
        for child in self._children.values():
            if child.restart_at is not None and now >= child.restart_at:
                child.restart_at = None
                with self._lock:
                    child.restarts += 1
                self._launch(child)

    def _handle(self, message: Message) -> None:
        if message.type == "line":
            self._printer.write(message)
            return
        child = self._children[message.name]
        if message.type == "start":
            with self._lock:
                child.pid = int(message.data["pid"])
            self._print(f"{child.name} started (pid={child.pid})")
            if self._stopping:
                # It was launched before the stop began and has only now reported its pid.
                _signal_group(child.pid, signal.SIGKILL if self._killed else signal.SIGTERM)
        elif message.type == "stop":
            self._stopped(child, int(message.data["returncode"]))

    def _stopped(self, child: _Child, returncode: int) -> None:
        ran_s = time.monotonic() - child.started_at
        with self._lock:
            child.pid = None
        child.running = False
        self._print(f"{child.name} stopped (rc={returncode})")
        if self._stopping or self._stop_requested.is_set():
            return
        if not child.restart:
            self._print(f"{child.name} exited; stopping everything")
            self.stop(returncode)
            return
        if ran_s >= self._stable_after_s:
            child.delay_s = self._restart_delay_s
        self._print(
            f"{child.name} exited; the other processes keep running; "
            f"restarting it in {child.delay_s:g} s"
        )
        child.restart_at = time.monotonic() + child.delay_s
        child.delay_s = min(child.delay_s * 2, self._max_restart_delay_s)

    def _begin_stop(self, now: float) -> None:
        received = self._signal_received
        if received is not None:
            self.signalled = True
            self._print(f"{received.name} received")
            with self._lock:
                self.returncode = SIGNAL_EXIT_CODES[received]
        self._stopping = True
        self._kill_at = now + self._kill_wait_s
        for child in self._children.values():
            child.restart_at = None
        self._signal_all(signal.SIGTERM)

    def _signal_all(self, sig: signal.Signals) -> None:
        for child in self._children.values():
            pid = child.pid
            if child.running and pid is not None:
                self._print(f"sending {sig.name} to {child.name} (pid {pid})")
                _signal_group(pid, sig)

    def _launch(self, child: _Child) -> None:
        child.running = True
        child.started_at = time.monotonic()
        child.thread = threading.Thread(
            target=self._run_child, args=(child,), name=f"process-{child.name}", daemon=True
        )
        child.thread.start()

    def _run_child(self, child: _Child) -> None:
        """Thread body: honcho's Process runs the command and reports start, output and stop."""
        try:
            child.process.run(self.events, ignore_signals=False)
        except Exception as exc:
            # The command could not even be started: report it as an exit like any other.
            self.events.put(_line(child.name, f"cannot start: {exc}"))
            self.events.put(_event("stop", child.name, {"returncode": 127}))

    def _all_stopped(self) -> bool:
        return not any(child.running for child in self._children.values())

    def _drain(self) -> None:
        """Print what is still queued after the last child stopped."""
        while True:
            try:
                message = self.events.get_nowait()
            except queue.Empty:
                return
            if message.type == "line":
                self._printer.write(message)

    def _print(self, text: str) -> None:
        self._printer.write(_line(SYSTEM_NAME, text))

    def _install_signal_handlers(self) -> dict[signal.Signals, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}

        def on_signal(signum: int, frame: FrameType | None) -> None:
            # Only flags: the loop may be inside a lock the handler would wait for forever.
            if self._signal_received is None:
                self._signal_received = signal.Signals(signum)
            self._stop_requested.set()

        previous = {sig: signal.getsignal(sig) for sig in SIGNAL_EXIT_CODES}
        for sig in SIGNAL_EXIT_CODES:
            signal.signal(sig, on_signal)
        return previous


def _signal_group(pid: int, sig: signal.Signals) -> None:
    """Signal the process group ``pid`` leads (the child and anything it started)."""
    try:
        os.killpg(pid, sig)
    except OSError as exc:
        # Gone already, or not ours to signal any more.
        if exc.errno not in (errno.ESRCH, errno.EPERM):
            raise


def _line(name: str, text: str) -> Message:
    return _event("line", name, text + "\n")


def _event(kind: str, name: str, data: Any) -> Message:
    return Message(type=kind, data=data, time=datetime.datetime.now(), name=name, colour=None)
