"""``trio-broadcast bench --driver c``: the bench's worker written in C (``loadgen.c``), built on
first use and run in place of the Python worker processes of :mod:`.run`.

The coordinator drives a loadgen process the way it drives a Python worker: :class:`LoadgenWorker`
stands for both the ``multiprocessing.Process`` and the parent end of its pipe, and turns each
line the process prints into the tuple a Python worker puts on the coordinator's queue, so
aggregation and the report are the same code for both drivers.

The line protocol, one JSON object per line (the same text heads ``loadgen.c``):

coordinator → loadgen, on its stdin:
    1. the spec (:func:`spec_line`): ``index``, ``address`` (numeric IP), ``port``, ``request``
       (the upgrade request, :func:`~trio_broadcast.wire.frames.upgrade_request`), ``run_id``,
       ``subscribers``, ``publishers`` (publisher numbers), ``stalled``, ``rate`` (messages/s per
       publisher, or null: max mode), ``window``, ``size``, ``total_publishers``, ``duration``,
       ``drain_timeout``, ``connect_timeout``; times in seconds.
    2. ``{"cmd": "start", "t0_ns": N}``: publish from CLOCK_MONOTONIC ``N`` for ``duration``.
    3. ``{"cmd": "drain", "target_seq": N | null, "drain_timeout": S}``.
    Any other command, or end of input before the drain, stops it: it reports and exits.

loadgen → coordinator, on its stdout, ``{"kind": K, ...}`` becoming ``(K, index, payload)``:
    ``progress`` (every second: connected, sent, acked, delivered, evicted, errors),
    ``connected`` (connected, wall_s), ``published`` (last_seq, complete_until, acked),
    ``drained``, and ``result``: every field of :class:`~.run.WorkerResult`, the latency
    histogram as ``{bucket: count}`` in :mod:`trio_broadcast.histogram`'s buckets.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from ..wire.frames import upgrade_request
from .run import WorkerResult, WorkerSpec

SOURCE = Path(__file__).with_name("loadgen.c")
CFLAGS = ["-O2", "-std=c11"]  # what the binary is built with (after $CC, default cc)


class LoadgenError(RuntimeError):
    """The C driver cannot run here: no compiler, not Linux, a failed build, a wss:// URL."""


def build_loadgen() -> Path:
    """Compile ``loadgen.c`` with ``$CC`` (default ``cc``) ``-O2`` into the user's cache
    (``$XDG_CACHE_HOME/trio-broadcast``, else ``~/.cache/trio-broadcast``), once per source and
    compiler command. Returns the binary.

    Raises:
        LoadgenError: not Linux, no compiler, or the build failed.
    """
    if not sys.platform.startswith("linux"):
        raise LoadgenError("--driver c runs on Linux only (epoll); use --driver python")
    command = [*shlex.split(os.environ.get("CC") or "cc"), *CFLAGS]
    if shutil.which(command[0]) is None:
        raise LoadgenError(
            f"--driver c needs a C compiler: {command[0]!r} not found "
            "(install gcc or clang, or set CC; or use --driver python)"
        )
    source = SOURCE.read_bytes()
    digest = hashlib.sha256(source + "\0".join(command).encode()).hexdigest()[:16]
    binary = _cache_dir() / f"loadgen-{digest}"
    if binary.is_file():
        return binary
    binary.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=binary.parent) as building:
        output = Path(building) / "loadgen"
        done = subprocess.run(
            [*command, "-o", str(output), str(SOURCE)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise LoadgenError(f"could not compile {SOURCE}:\n{done.stderr.strip()[-3000:]}")
        os.replace(output, binary)  # atomic: a concurrent build leaves one good binary
    return binary


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "trio-broadcast"


def spec_line(spec: WorkerSpec) -> dict[str, Any]:
    """The first line for a loadgen process: its share of the load, the server's address
    resolved here, and the upgrade request the Python bench sends.

    Raises:
        LoadgenError: the URL is not ws:// (the C driver has no TLS).
        OSError: the host name does not resolve.
    """
    parts = urlsplit(spec.url)
    if parts.scheme != "ws":
        raise LoadgenError("--driver c speaks ws:// only (no TLS); use --driver python for wss://")
    host = parts.hostname or "localhost"
    port = parts.port or 80
    address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][4][0]
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    return {
        "index": spec.index,
        "address": str(address).split("%", 1)[0],  # an IPv6 scope id is not for inet_pton
        "port": port,
        "request": upgrade_request(parts.netloc, target).decode("ascii"),
        "run_id": spec.run_id,
        "subscribers": spec.subscribers,
        "publishers": spec.publishers,
        "stalled": spec.stalled,
        "rate": spec.rate,
        "window": spec.window,
        "size": spec.size,
        "total_publishers": spec.total_publishers,
        "duration": spec.duration,
        "drain_timeout": spec.drain_timeout,
        "connect_timeout": spec.connect_timeout,
    }


def result_from_mapping(index: int, data: Mapping[str, Any]) -> WorkerResult:
    """A loadgen's ``result`` line as the :class:`~.run.WorkerResult` a Python worker sends."""
    return WorkerResult(
        index=index,
        connect_ms=[float(ms) for ms in data["connect_ms"]],
        connect_wall_s=float(data["connect_wall_s"]),
        connect_failed=int(data["connect_failed"]),
        sent=int(data["sent"]),
        acked=int(data["acked"]),
        expected_messages=int(data["expected_messages"]),
        first_seq=None if data["first_seq"] is None else int(data["first_seq"]),
        last_seq=None if data["last_seq"] is None else int(data["last_seq"]),
        delivered=int(data["delivered"]),
        frames=int(data["frames"]),
        events=int(data["events"]),
        gaps=int(data["gaps"]),
        missing=int(data["missing"]),
        duplicates=int(data["duplicates"]),
        evicted=int(data["evicted"]),
        stalled_evicted=int(data["stalled_evicted"]),
        stalled_dropped=int(data["stalled_dropped"]),
        closes={int(code): int(n) for code, n in data["closes"].items()},
        errors={str(kind): int(n) for kind, n in data["errors"].items()},
        latency={int(bucket): int(n) for bucket, n in data["latency"].items()},
        last_receive_ns=int(data["last_receive_ns"]),
        publish_lag_ms=float(data["publish_lag_ms"]),
        cpu_s=float(data["cpu_s"]),
    )


class LoadgenWorker:
    """One loadgen process in place of a Python worker: started, commanded (:meth:`send`),
    joined and killed like a ``multiprocessing.Process`` and its pipe. A thread relays its
    lines to ``out``; a process that ends without a result still yields one (with the error),
    as a crashed Python worker's does."""

    def __init__(self, binary: Path, spec: WorkerSpec, out: Any) -> None:
        self.spec = spec
        self._binary = binary
        self._out = out  # the coordinator's queue
        self._process: subprocess.Popen[str] | None = None
        self._relay: threading.Thread | None = None

    def start(self) -> None:
        """Start the process and give it its spec (raises LoadgenError for a wss:// URL)."""
        line = spec_line(self.spec)
        self._process = subprocess.Popen(
            [str(self._binary)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.send(line)
        assert self._process.stdout is not None
        self._relay = threading.Thread(
            target=self._forward, args=(self._process.stdout,), daemon=True
        )
        self._relay.start()

    def send(self, command: Mapping[str, Any]) -> None:
        """One line to the process. Raises OSError when it has already ended."""
        assert self._process is not None
        assert self._process.stdin is not None
        try:
            self._process.stdin.write(json.dumps(command) + "\n")
            self._process.stdin.flush()
        except ValueError as closed:  # stdin closed by join()
            raise BrokenPipeError(str(closed)) from closed

    def _forward(self, lines: IO[str]) -> None:
        index = self.spec.index
        assert self._process is not None
        reported = False
        try:
            for line in lines:
                data = json.loads(line)
                kind = data.pop("kind")
                if kind == "result":
                    self._out.put((kind, index, result_from_mapping(index, data)))
                    reported = True
                else:
                    self._out.put((kind, index, data))
        except (ValueError, KeyError, TypeError) as error:  # not the protocol: a loadgen bug
            print(f"trio-broadcast bench: loadgen {index}: {error!r}", file=sys.stderr)
            self._process.kill()
        if not reported:
            code = self._process.wait()
            crash = WorkerResult(index=index, errors={f"worker crashed: exit {code}": 1})
            self._out.put(("result", index, crash))

    def join(self, timeout: float | None = None) -> None:
        """Close its stdin (it reports and exits, if it has not yet) and wait up to
        ``timeout`` seconds."""
        if self._process is None:
            return
        if self._process.stdin is not None and not self._process.stdin.closed:
            with contextlib.suppress(BrokenPipeError):  # it has ended already
                self._process.stdin.close()
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            return
        if self._relay is not None:
            self._relay.join(timeout)

    def is_alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def kill(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait()
