"""Start-up failures are one line and a non-zero exit, under ``trio-broadcast serve`` and under
the plain Hypercorn CLI; Hypercorn's SIGTERM closes clients with 1001."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import trio
from support import close_code, connect, receive_type
from trio_websocket import ConnectionClosed, WebSocketConnection

from trio_broadcast.cli import startup_error

SERVE = [sys.executable, "-m", "trio_broadcast", "serve"]
HYPERCORN = [
    sys.executable,
    "-m",
    "hypercorn",
    "--config",
    "python:trio_broadcast.server.hypercorn_conf",
]
APP = "trio_broadcast.server.asgi:app"


@contextmanager
def _taken_port() -> Iterator[int]:
    """A port some other socket listens on for the duration."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(**variables: str) -> dict[str, str]:
    return {**os.environ, **{f"TRIO_BROADCAST_{key.upper()}": v for key, v in variables.items()}}


async def _run(command: list[str], env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run to completion (stdin closed); its exit status and its stderr."""
    result = await trio.run_process(
        command,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    return result.returncode, result.stderr.decode()


def _lock_litter() -> set[str]:
    """Files an earlier version left in the temp directory, one per Hypercorn master."""
    return {
        name
        for name in os.listdir(tempfile.gettempdir())
        if name.startswith("trio-broadcast-") and not name.startswith("trio-broadcast-bench-")
    }


def test_startup_error_unwraps_nested_exception_groups() -> None:
    busy = OSError(98, "Address already in use")
    nested = ExceptionGroup("outer", [ExceptionGroup("inner", [busy])])
    assert startup_error(nested) is busy
    assert startup_error(busy) is busy
    assert startup_error(ExceptionGroup("mixed", [busy, ValueError("bug")])) is None
    assert startup_error(ValueError("bug")) is None


async def test_busy_port_is_one_line_and_exit_status_1() -> None:
    with _taken_port() as port:
        status, stderr = await _run([*SERVE, "--port", str(port)])
    assert status == 1
    assert stderr.splitlines() == [
        f"trio-broadcast: cannot start on 127.0.0.1:{port}: [Errno 98] Address already in use"
    ]


async def test_address_not_of_this_host_is_one_line_and_exit_status_1() -> None:
    status, stderr = await _run([*SERVE, "--host", "192.0.2.1", "--port", "0"])  # TEST-NET-1
    assert status == 1
    assert len(stderr.splitlines()) == 1, stderr
    assert "cannot start on 192.0.2.1:0" in stderr


@pytest.mark.parametrize("workers", [["-w", "2"], ["-w2"], ["--workers", "3"], ["--workers=2"]])
async def test_hypercorn_with_two_workers_exits_non_zero_in_one_line_leaving_no_file(
    workers: list[str],
) -> None:
    before = _lock_litter()
    status, stderr = await _run([*HYPERCORN, *workers, APP], env=_env(port=str(_free_port())))
    assert status == 3
    assert len(stderr.splitlines()) == 1, stderr
    assert "run Hypercorn with one worker (-w 1)" in stderr
    assert _lock_litter() == before


async def test_hypercorn_on_a_busy_port_exits_1_in_one_line() -> None:
    with _taken_port() as port:
        status, stderr = await _run([*HYPERCORN, APP], env=_env(port=str(port)))
    assert status == 1
    assert stderr.splitlines() == [
        f"trio-broadcast: cannot start on 127.0.0.1:{port}: [Errno 98] Address already in use"
    ]


async def test_hypercorn_invalid_setting_exits_2_in_one_line() -> None:
    status, stderr = await _run([*HYPERCORN, APP], env=_env(publish_rate="fast"))
    assert status == 2
    assert stderr.splitlines() == [
        "trio-broadcast: invalid setting: TRIO_BROADCAST_PUBLISH_RATE: cannot read 'fast' as float"
    ]


@pytest.mark.slow
async def test_second_worker_from_a_config_file_is_refused_without_traceback(
    tmp_path: Path,
) -> None:
    """Workers set outside the command line: the second worker refuses itself at import."""
    config = tmp_path / "hypercorn.toml"
    config.write_text(f'worker_class = "trio"\nworkers = 2\nbind = ["127.0.0.1:{_free_port()}"]\n')
    before = _lock_litter()
    _status, stderr = await _run(
        [sys.executable, "-m", "hypercorn", "--config", str(config), APP], env=_env()
    )
    # The status is Hypercorn's to give: 0.18 may return 0 here (docs/deployment.md).
    assert "trio-broadcast: refusing to start a second Hypercorn worker" in stderr
    assert "Traceback" not in stderr
    assert _lock_litter() == before


async def _read_until_closed(ws: WebSocketConnection) -> None:
    while True:
        await ws.get_message()


@pytest.mark.slow
async def test_hypercorn_sigterm_closes_clients_with_1001_and_exits_0() -> None:
    port = _free_port()
    # A shutdown timeout far above the test's deadline: a client left to it would fail the test.
    env = _env(port=str(port), shutdown_timeout="600", log_level="info")
    process = await trio.lowlevel.open_process(
        [*HYPERCORN, APP], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        assert process.stderr is not None
        output = b""
        while b"Running on" not in output:
            chunk = await process.stderr.receive_some(4096)
            assert chunk, output.decode()
            output += chunk
        async with connect(f"ws://127.0.0.1:{port}/ws/events") as ws:
            await receive_type(ws, "welcome")
            process.send_signal(signal.SIGTERM)
            with pytest.raises(ConnectionClosed) as closed:
                await _read_until_closed(ws)
        assert close_code(closed.value) == 1001
        assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_unreadable_certificate_is_one_line_naming_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    status, stderr = await _run([*SERVE, "--port", "0", "--certfile", str(missing)])
    assert status == 1
    assert len(stderr.splitlines()) == 1, stderr
    assert f"cannot read certfile {missing}" in stderr


async def test_file_that_is_no_certificate_is_one_line(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    status, stderr = await _run([*SERVE, "--port", "0", "--certfile", str(garbage)])
    assert status == 1
    assert len(stderr.splitlines()) == 1, stderr
    assert f"cannot use certfile {garbage}" in stderr
