"""``trio-broadcast serve --workers N``: N server processes sharing one listening socket.

The parent binds the socket (so a start-up failure is one line, as for one process), starts N
workers that accept on it (each a whole server with its own hub; they share one audience
through the Redis backplane, which ``workers > 1`` requires), prints the listening line once
every worker is ready, and then only supervises:

- SIGTERM or SIGINT to the parent: it sends SIGTERM to every worker; each closes its clients
  with 1001 and exits; the parent exits 0 when all of them did.
- A worker that exits on its own (a crash, a kill): the parent reports it, stops the others and
  exits 1. It does not restart workers: a process manager or orchestrator restarts the whole
  service, and a worker that keeps dying should not be hidden behind restarts.

Workers run in a session of their own, so a Ctrl-C in a terminal reaches the parent only, and
each worker gets exactly one SIGTERM.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence

from .config import Settings
from .serve import ServerInfo, open_listener

LISTEN_FD_VARIABLE = "TRIO_BROADCAST_LISTEN_FD"  # set for a worker: the listening socket's fd
WORKER_START_TIMEOUT = 60.0  # seconds every worker has to report that it listens
LISTENING = "trio-broadcast listening on "


def inherited_listener() -> socket.socket | None:
    """In a worker: the listening socket its parent handed over (and forget the variable)."""
    fd = os.environ.pop(LISTEN_FD_VARIABLE, None)
    return socket.socket(fileno=int(fd)) if fd is not None else None


def run_workers(settings: Settings, argv: Sequence[str]) -> int:
    """Bind, start ``settings.workers`` workers running ``argv`` (the ``serve`` command line),
    supervise them. Returns the exit status.

    Raises:
        OSError: the address cannot be bound.
    """
    sock = open_listener(settings)
    host, port = sock.getsockname()[:2]
    info = ServerInfo(host=host, port=port, secure=settings.certfile is not None)
    env = {**os.environ, LISTEN_FD_VARIABLE: str(sock.fileno())}
    command = [sys.executable, "-m", "trio_broadcast", "serve", *argv, "--workers", "1"]
    workers: list[subprocess.Popen[str]] = []
    stopping = False

    def stop(signum: int = signal.SIGTERM, _frame: object = None) -> None:
        nonlocal stopping
        stopping = True
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    with sock:
        for _ in range(settings.workers):
            workers.append(
                subprocess.Popen(
                    command,
                    env=env,
                    pass_fds=(sock.fileno(),),
                    stdout=subprocess.PIPE,
                    text=True,
                    start_new_session=True,
                )
            )
        if not _all_listening(workers):
            stop()
            _reap(workers)
            print("trio-broadcast: a worker did not start", file=sys.stderr, flush=True)
            return 1
    print(f"{LISTENING}{info.url}", flush=True)
    status = 0
    while any(worker.poll() is None for worker in workers):
        try:
            pid, code = os.wait()
        except ChildProcessError:  # pragma: no cover - all reaped meanwhile
            break
        worker = next((w for w in workers if w.pid == pid), None)
        if worker is None:
            continue
        worker.returncode = os.waitstatus_to_exitcode(code)
        if not stopping:
            print(
                f"trio-broadcast: worker {pid} exited with status {worker.returncode}; "
                "stopping the others",
                file=sys.stderr,
                flush=True,
            )
            status = 1
            stop()
        elif worker.returncode != 0:
            status = 1
    return status


def _all_listening(workers: Sequence[subprocess.Popen[str]]) -> bool:
    """Wait for every worker's listening line (their only line on stdout)."""
    deadline = time.monotonic() + WORKER_START_TIMEOUT
    for worker in workers:
        assert worker.stdout is not None
        while time.monotonic() < deadline:
            line = worker.stdout.readline()
            if line.startswith(LISTENING):
                break
            if not line:  # the worker exited before it listened
                return False
        else:
            return False
    return True


def _reap(workers: Sequence[subprocess.Popen[str]]) -> None:
    for worker in workers:
        try:
            worker.wait(timeout=WORKER_START_TIMEOUT)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
