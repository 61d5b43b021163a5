"""The process supervisor on real child processes: restarts, backoff, stopping everything."""

from __future__ import annotations

import io
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from honcho.printer import Printer

from brokermesh.platform.processes import Supervisor

from .support import alive, wait_gone

pytestmark = pytest.mark.timeout(60)

#: Bound for anything the supervisor should have done by then on an idle machine.
WITHIN_S = 20.0


def _supervisor(output: io.StringIO, **options: float) -> Supervisor:
    return Supervisor(Printer(output), **options)


def _add(supervisor: Supervisor, name: str, command: str, cwd: Path, *, restart: bool) -> None:
    supervisor.add(name, command, env=dict(os.environ), cwd=str(cwd), restart=restart)


def _wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WITHIN_S
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(0.05)


def _drive(
    supervisor: Supervisor, steps: Callable[[], None], *, then_stop: bool = True
) -> threading.Thread:
    """Run ``steps`` beside the supervisor's loop, then stop it (always, if a step failed)."""

    def run() -> None:
        try:
            steps()
        except BaseException:
            supervisor.stop()
            raise
        if then_stop:
            supervisor.stop()

    thread = threading.Thread(target=run, name="test-driver", daemon=True)
    thread.start()
    return thread


def test_restartable_process_that_exits_is_restarted_while_the_others_keep_running(
    tmp_path: Path,
) -> None:
    # Arrange: "control" exits once, then stays up; "data" stays up throughout.
    marker = tmp_path / "exited-once"
    output = io.StringIO()
    supervisor = _supervisor(output, restart_delay_s=0.2)
    _add(
        supervisor,
        "control",
        f"if [ -e {marker} ]; then exec sleep 60; else touch {marker}; exit 3; fi",
        tmp_path,
        restart=True,
    )
    _add(supervisor, "data", "exec sleep 60", tmp_path, restart=False)
    seen: dict[str, int | None] = {}

    def steps() -> None:
        _wait_until(lambda: supervisor.pid("data") is not None)
        seen["data before"] = supervisor.pid("data")
        _wait_until(
            lambda: supervisor.restarts("control") == 1 and supervisor.pid("control") is not None
        )
        seen["control after"] = supervisor.pid("control")
        seen["data after"] = supervisor.pid("data")
        seen["alive"] = len(alive([seen["control after"] or 0, seen["data after"] or 0]))

    # Act
    driver = _drive(supervisor, steps)
    supervisor.run()
    driver.join(timeout=10)

    # Assert
    text = output.getvalue()
    assert seen["data before"] is not None, text
    assert seen["data after"] == seen["data before"], text
    assert seen["alive"] == 2, text
    assert "control stopped (rc=3)" in text
    assert "control exited; the other processes keep running; restarting it in 0.2 s" in text
    assert "data stopped" in text.split("sending SIGTERM to data")[1]
    assert supervisor.returncode is None
    assert wait_gone([seen["control after"] or 0, seen["data after"] or 0]) == []


def test_process_not_allowed_to_restart_that_exits_stops_everything(tmp_path: Path) -> None:
    # Arrange
    output = io.StringIO()
    supervisor = _supervisor(output)
    _add(supervisor, "control", "exec sleep 60", tmp_path, restart=True)
    _add(supervisor, "data", "sleep 0.5; exit 4", tmp_path, restart=False)
    pids: list[int] = []
    driver = _drive(
        supervisor,
        lambda: pids.append(_pid_when_running(supervisor, "control")),
        then_stop=False,
    )

    # Act
    started = time.monotonic()
    supervisor.run()
    driver.join(timeout=10)

    # Assert
    text = output.getvalue()
    assert time.monotonic() - started < WITHIN_S, text
    assert supervisor.returncode == 4, text
    assert "data exited; stopping everything" in text
    assert "sending SIGTERM to control" in text
    assert supervisor.restarts("control") == 0
    assert wait_gone(pids) == [], text


def test_restart_delay_doubles_while_the_process_keeps_exiting(tmp_path: Path) -> None:
    output = io.StringIO()
    supervisor = _supervisor(output, restart_delay_s=0.1, max_restart_delay_s=0.4)
    _add(supervisor, "control", "exit 1", tmp_path, restart=True)
    _add(supervisor, "data", "exec sleep 60", tmp_path, restart=False)

    driver = _drive(supervisor, lambda: _wait_until(lambda: supervisor.restarts("control") >= 4))
    supervisor.run()
    driver.join(timeout=10)

    delays = [
        line.rsplit("restarting it in ", 1)[1]
        for line in output.getvalue().splitlines()
        if "restarting it in" in line
    ]
    assert delays[:4] == ["0.1 s", "0.2 s", "0.4 s", "0.4 s"]


def test_stop_kills_a_process_that_ignores_sigterm(tmp_path: Path) -> None:
    output = io.StringIO()
    supervisor = _supervisor(output, kill_wait_s=0.5)
    _add(
        supervisor,
        "stubborn",
        "trap '' TERM; while :; do sleep 0.1; done",
        tmp_path,
        restart=False,
    )
    pids: list[int] = []
    driver = _drive(supervisor, lambda: pids.append(_pid_when_running(supervisor, "stubborn")))

    started = time.monotonic()
    supervisor.run()
    driver.join(timeout=10)

    text = output.getvalue()
    assert time.monotonic() - started < WITHIN_S, text
    assert "sending SIGTERM to stubborn" in text
    assert "sending SIGKILL to stubborn" in text
    assert wait_gone(pids) == [], text


def test_a_process_name_is_used_once(tmp_path: Path) -> None:
    supervisor = _supervisor(io.StringIO())
    _add(supervisor, "oms", "exec sleep 1", tmp_path, restart=False)

    with pytest.raises(ValueError, match="'oms' is taken"):
        _add(supervisor, "oms", "exec sleep 1", tmp_path, restart=False)
    with pytest.raises(ValueError, match="'system' is taken"):
        _add(supervisor, "system", "exec sleep 1", tmp_path, restart=False)


def _pid_when_running(supervisor: Supervisor, name: str) -> int:
    _wait_until(lambda: supervisor.pid(name) is not None)
    pid = supervisor.pid(name)
    assert pid is not None
    return pid
