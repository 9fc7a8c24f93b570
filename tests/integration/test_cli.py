"""``trio-broadcast send|listen|chat`` as subprocesses against a real server."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

import pytest
import trio
from conftest import RunningServer

from trio_broadcast.client.session import Client, Message, open_client

TIMEOUT = 30  # seconds per test: every command starts a Python interpreter
COMMAND = [sys.executable, "-m", "trio_broadcast"]


async def run(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    """Run a command to completion, capturing its output."""
    return await trio.run_process(
        [*COMMAND, *args], stdin=stdin, capture_stdout=True, capture_stderr=True, check=False
    )


class Lines:
    """Lines of a subprocess pipe, read on demand."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self.stream = stream
        self.buffer = b""

    async def next(self) -> str:
        while b"\n" not in self.buffer:
            data = await self.stream.receive_some()
            if not data:
                raise EOFError(self.buffer.decode())
            self.buffer += data
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode()

    async def until(self, predicate: Callable[[str], bool]) -> str:
        while True:
            line = await self.next()
            if predicate(line):
                return line

    async def rest(self) -> str:
        chunks = [self.buffer]
        async for data in self.stream:
            chunks.append(bytes(data))
        return b"".join(chunks).decode()


@asynccontextmanager
async def started(*args: str) -> AsyncIterator[tuple[trio.Process, Lines, Lines]]:
    """A command running in the background, with its stdin, stdout and stderr as pipes."""
    process = await trio.lowlevel.open_process(
        [*COMMAND, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    assert process.stderr is not None
    try:
        yield process, Lines(process.stdout), Lines(process.stderr)
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()
        for pipe in (process.stdin, process.stdout, process.stderr):
            if pipe is not None:
                await pipe.aclose()


async def next_message(client: Client) -> Message:
    async for event in client:
        if isinstance(event, Message):
            return event
    raise AssertionError("the client stopped")


async def publish_all(url: str, texts: Sequence[str]) -> None:
    async with open_client(url, receive=False) as publisher:
        for text in texts:
            await publisher.publish(text)


# -- send ------------------------------------------------------------------------------------


async def test_send_publishes_its_arguments_as_one_message(server: RunningServer) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_client(server.ws_url) as listener:
            done = await run("send", server.url, "hello", "world", "--json")
            assert done.returncode == 0, done.stderr
            ack = json.loads(done.stdout)
            assert ack["type"] == "ack"
            message = await next_message(listener)
            assert (message.text, message.seq) == ("hello world", ack["seq"])


async def test_send_reads_one_message_per_line_from_stdin(server: RunningServer) -> None:
    with trio.fail_after(TIMEOUT):
        done = await run("send", server.ws_url, stdin=b"one\ntwo\nthree\n")
        assert done.returncode == 0, done.stderr
        assert done.stdout == b""  # quiet unless --json
        async with open_client(server.ws_url, since=0) as replay:
            texts = []
            async for event in replay:
                if isinstance(event, Message):
                    texts.append(event.text)
                    if len(texts) == 3:
                        break
        assert texts == ["one", "two", "three"]


# -- listen ----------------------------------------------------------------------------------


async def test_listen_prints_messages_as_json_lines(server: RunningServer) -> None:
    with trio.fail_after(TIMEOUT):
        async with started("listen", server.ws_url, "--json", "--count", "2") as (proc, out, err):
            assert (await err.next()).startswith("-- connected")
            await publish_all(server.ws_url, ["first", "second"])
            lines = [json.loads(await out.next()) for _ in range(2)]
            assert [(line["seq"], line["message"]) for line in lines] == [
                (1, "first"),
                (2, "second"),
            ]
            assert all(line["type"] == "message" and line["timestamp"] for line in lines)
            assert await proc.wait() == 0


async def test_listen_since_replays_with_a_readable_format(server: RunningServer) -> None:
    with trio.fail_after(TIMEOUT):
        await publish_all(server.ws_url, ["a", "b", "c"])
        done = await run("listen", server.url, "--since", "1", "--count", "2", "--quiet")
        assert done.returncode == 0, done.stderr
        lines = done.stdout.decode().splitlines()
        assert [line.split(" ", 1)[0] for line in lines] == ["#2", "#3"]
        assert lines[0].endswith(": b")
        assert "Z " in lines[0]  # the UTC timestamp


async def test_listen_without_reconnect_exits_5_when_the_server_goes_away(
    server: RunningServer,
) -> None:
    with trio.fail_after(TIMEOUT):
        async with started("listen", server.ws_url, "--no-reconnect") as (proc, _out, err):
            assert (await err.next()).startswith("-- connected")
            server.shutdown()
            assert await proc.wait() == 5
            assert "1001" in await err.rest()


# -- chat ------------------------------------------------------------------------------------


async def test_chat_publishes_typed_lines_and_shows_others(server: RunningServer) -> None:
    with trio.fail_after(TIMEOUT):
        async with (
            open_client(server.ws_url) as other,
            started("chat", server.ws_url, "--name", "ann") as (proc, out, err),
        ):
            await err.until(lambda line: line.startswith("-- you are"))
            assert proc.stdin is not None
            await proc.stdin.send_all(b"hi all\n")
            heard = await next_message(other)
            assert heard.text == "ann: hi all"
            assert (await out.next()).endswith("you: ann: hi all")

            await other.publish("welcome, ann")
            assert (await out.next()).endswith(f"{other.client_id}: welcome, ann")
            await proc.stdin.aclose()  # Ctrl-D
            assert await proc.wait() == 0


# -- errors ----------------------------------------------------------------------------------


async def test_bad_url_is_a_usage_error() -> None:
    with trio.fail_after(TIMEOUT):
        done = await run("send", "gopher://example", "x")
        assert done.returncode == 2
        assert b"invalid URL" in done.stderr


async def test_refused_connection_exits_3_with_a_clear_message() -> None:
    with trio.fail_after(TIMEOUT):
        probe = trio.socket.socket()
        await probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()  # nothing listens there
        done = await run("listen", f"ws://127.0.0.1:{port}/ws/events")
        assert done.returncode == 3
        assert b"connection refused" in done.stderr


async def test_rejected_origin_exits_4_and_says_why(server: RunningServer) -> None:
    with trio.fail_after(TIMEOUT):
        done = await run("send", server.url, "x", "--origin", "https://evil.example")
        assert done.returncode == 4
        assert b"403" in done.stderr
        assert b"Origin" in done.stderr


@pytest.mark.parametrize(
    "args", [["send", "ws://h", "--id", "x"], ["listen", "ws://h", "--epoch", "e"]]
)
async def test_inconsistent_options_are_usage_errors(args: list[str]) -> None:
    with trio.fail_after(TIMEOUT):
        done = await run(*args)
        assert done.returncode == 2
        assert b"needs" in done.stderr
