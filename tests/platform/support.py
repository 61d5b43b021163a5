"""Helpers shared by the platform tests: whether a port is free, and waiting for processes to go."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterable

import psutil


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def alive(pids: Iterable[int]) -> list[int]:
    """The pids still running; a zombie has exited and only waits for its parent to reap it."""
    running = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                running.append(pid)
        except psutil.NoSuchProcess:
            continue
    return running


def wait_gone(pids: Iterable[int], timeout_s: float = 15.0) -> list[int]:
    """Wait until none of ``pids`` runs; returns those still running at the deadline."""
    pending = list(pids)
    deadline = time.monotonic() + timeout_s
    while pending and time.monotonic() < deadline:
        pending = alive(pending)
        if pending:
            time.sleep(0.1)
    return alive(pending)


def process_tree(pid: int) -> set[int]:
    """``pid`` and all its descendants, as far as they exist now."""
    try:
        root = psutil.Process(pid)
        return {pid, *(child.pid for child in root.children(recursive=True))}
    except psutil.NoSuchProcess:
        return set()


def processes_using(path: str) -> list[str]:
    """Running processes that mention ``path`` in their command line or environment:
    what a platform rooted there would leave behind."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            text = " ".join(proc.cmdline())
            env = proc.environ()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        if path in text or any(path in value for value in env.values()):
            found.append(f"{proc.pid} {text}")
    return found
