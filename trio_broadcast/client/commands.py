"""``trio-broadcast send|listen|chat``: the client library as command-line tools.

Their arguments and exit codes are in :mod:`.args`.
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, TextIO

import trio

from ..ratelimit import TokenBucket
from .args import (
    EXIT_CONNECT,
    EXIT_INTERRUPTED,
    EXIT_LOST,
    EXIT_OK,
    EXIT_PUBLISH_FAILED,
    EXIT_REJECTED,
    EXIT_USAGE,
)
from .session import (
    Ack,
    CertificateError,
    Client,
    ClientError,
    Connected,
    ConnectError,
    ConnectFailed,
    ConnectionLostError,
    Disconnected,
    Gap,
    HandshakeRejectedError,
    InvalidURLError,
    Message,
    OriginRejectedError,
    PublishError,
    RateLimitedError,
    open_client,
)

RATE_LIMIT_RETRIES = 20  # times a rate-limited line is retried before send gives up


# -- running a command -------------------------------------------------------------------------


def _fail(message: str, code: int) -> int:
    print(f"trio-broadcast: {message}", file=sys.stderr, flush=True)
    return code


def _run(main: Callable[[], Awaitable[int]]) -> int:
    """Run ``main`` under trio; map the client's errors to exit codes and messages."""
    try:
        return trio.run(main)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. `listen | head`: the reader is gone, nothing to report
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except (ClientError, BaseExceptionGroup) as raised:
        error = _client_error(raised)
        if error is None:
            raise
        return _report(error)


def _client_error(error: BaseException) -> ClientError | None:
    """The client error in ``error`` (a task of ours may have raised it inside a nursery)."""
    if isinstance(error, ClientError):
        return error
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            found = _client_error(inner)
            if found is not None:
                return found
    return None


def _report(error: ClientError) -> int:
    if isinstance(error, InvalidURLError):
        return _fail(str(error), EXIT_USAGE)
    if isinstance(error, OriginRejectedError):
        return _fail(
            f"{error}\n  the server does not allow this Origin; add it to the server's "
            "--allowed-origins (or its host name to --public-hosts), or send none",
            EXIT_REJECTED,
        )
    if isinstance(error, HandshakeRejectedError):
        return _fail(str(error), EXIT_REJECTED)
    if isinstance(error, CertificateError):
        return _fail(
            f"{error}\n  trust the server's CA with --cafile FILE, or skip the check with "
            "--insecure",
            EXIT_CONNECT,
        )
    if isinstance(error, ConnectError):
        return _fail(str(error), EXIT_CONNECT)
    if isinstance(error, ConnectionLostError):
        return _fail(str(error), EXIT_LOST)
    return _fail(str(error), EXIT_PUBLISH_FAILED)


def _ssl_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    """The TLS context ``--cafile`` / ``--insecure`` ask for; None: the system's defaults."""
    if args.cafile is None and not args.insecure:
        return None
    context = ssl.create_default_context(cafile=args.cafile)
    if args.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


@asynccontextmanager
async def _connect(args: argparse.Namespace, **options: Any) -> AsyncIterator[Client]:
    async with open_client(
        args.url,
        batch=not args.no_batch,
        origin=args.origin,
        headers=args.header,
        ssl_context=_ssl_context(args),
        connect_timeout=args.connect_timeout,
        **options,
    ) as client:
        yield client


def _time(message_time: datetime | None) -> str:
    if message_time is None:
        return "?"
    return message_time.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def _status(event: Connected | Disconnected | ConnectFailed, out: TextIO) -> None:
    """One human-readable line about the connection."""
    if isinstance(event, Connected):
        how = "resumed" if event.resumed else "connected"
        text = (
            f"{how}: epoch {event.epoch}, seq {event.seq}, {event.connections} connected, "
            f"batch {'on' if event.batch else 'off'}"
        )
    elif isinstance(event, Disconnected):
        again = f"; reconnecting in {event.reconnect_in:.1f} s" if event.reconnect_in else ""
        text = f"disconnected: {event.reason}{again}"
    else:
        text = f"connect attempt {event.attempt} failed: {event.error}; "
        text += f"retrying in {event.reconnect_in:.1f} s"
    print(f"-- {text}", file=out, flush=True)


def _gap_text(gap: Gap) -> str:
    why = {
        "history_expired": "the server's history no longer holds them",
        "epoch_mismatch": "the server restarted",
        "sequence_jump": "unexplained jump in seq",
    }[gap.reason]
    if gap.count is not None:
        return f"-- gap: {gap.count} message(s) lost (#{gap.since + 1}..#{gap.until}): {why}"
    return f"-- gap: an unknown number of messages lost after #{gap.since}: {why}"


def _json_line(data: dict[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def _message_json(message: Message) -> dict[str, Any]:
    return {
        "type": "message",
        "seq": message.seq,
        "epoch": message.epoch,
        "message": message.text,
        "timestamp": message.timestamp.isoformat() if message.timestamp else None,
        "sender": message.sender,
        "replayed": message.replayed,
    }


def _gap_json(gap: Gap) -> dict[str, Any]:
    return {
        "type": "gap",
        "reason": gap.reason,
        "previous_epoch": gap.previous_epoch,
        "since": gap.since,
        "epoch": gap.epoch,
        "until": gap.until,
        "count": gap.count,
    }


def _ack_json(ack: Ack) -> dict[str, Any]:
    return {
        "type": "ack",
        "seq": ack.seq,
        "epoch": ack.epoch,
        "timestamp": ack.timestamp.isoformat() if ack.timestamp else None,
        "id": ack.id,
    }


async def _lines(stdin_fd: int) -> AsyncIterator[str]:
    """Lines of a file descriptor, without the newline; cancellable (no threads)."""
    stream = trio.lowlevel.FdStream(os.dup(stdin_fd))
    async with stream:
        buffer = b""
        async for chunk in stream:
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                yield line.decode("utf-8", "replace").rstrip("\r")
        if buffer:
            yield buffer.decode("utf-8", "replace").rstrip("\r")


# -- send --------------------------------------------------------------------------------------


class _Pacer:
    """Paces ``send`` to the server's publish rate (the same token bucket as the server's), so
    that sending many lines is not refused: ``burst`` at once, then ``rate`` per second."""

    def __init__(self, rate: float | None, burst: int | None) -> None:
        self.bucket = TokenBucket(rate, burst or 1) if rate is not None else None

    async def take(self) -> None:
        """Wait for a token, if pacing. A checkpoint."""
        bucket = self.bucket
        wait = 0.0 if bucket is None else bucket.take(trio.current_time())
        if bucket is None or not wait:
            await trio.lowlevel.checkpoint()
            return
        await trio.sleep(wait)
        bucket.refill(trio.current_time())
        bucket.tokens = max(0.0, bucket.tokens - 1.0)  # the token it waited for

    def empty(self) -> None:
        """The server refused one: its bucket is emptier than ours."""
        if self.bucket is not None:
            self.bucket.tokens = 0.0


async def _send_one(client: Client, pacer: _Pacer, text: str, id_: str | None) -> Ack:
    for _ in range(RATE_LIMIT_RETRIES):
        await pacer.take()
        try:
            return await client.publish(text, id=id_)
        except RateLimitedError:
            pacer.empty()  # the server's bucket is emptier than ours: slow down
    return await client.publish(text, id=id_)


def run_send(args: argparse.Namespace) -> int:
    if args.id is not None and not args.text:
        print("trio-broadcast send: --id needs a TEXT argument", file=sys.stderr)
        return EXIT_USAGE

    async def main() -> int:
        failures = 0
        async with _connect(args, receive=False, publish_wait=args.wait) as client:
            limits = client.limits
            pacer = _Pacer(
                limits.publish_rate if limits else None, limits.publish_burst if limits else None
            )

            async def send(text: str, id_: str | None) -> None:
                nonlocal failures
                try:
                    ack = await _send_one(client, pacer, text, id_)
                except PublishError as error:
                    failures += 1
                    print(f"trio-broadcast send: {text[:40]!r}: {error}", file=sys.stderr)
                    return
                if args.json:
                    print(_json_line(_ack_json(ack)), flush=True)

            if args.text:
                await send(" ".join(args.text), args.id)
            else:
                async for line in _lines(sys.stdin.fileno()):
                    await send(line, None)
        return EXIT_PUBLISH_FAILED if failures else EXIT_OK

    return _run(main)


# -- listen ------------------------------------------------------------------------------------


def run_listen(args: argparse.Namespace) -> int:
    if args.epoch is not None and args.since is None:
        print("trio-broadcast listen: --epoch needs --since", file=sys.stderr)
        return EXIT_USAGE

    async def main() -> int:
        out, err = sys.stdout, sys.stderr
        received = 0
        async with _connect(
            args, since=args.since, epoch=args.epoch, reconnect=not args.no_reconnect
        ) as client:
            if args.count == 0:
                return EXIT_OK
            async for event in client:
                if isinstance(event, Message):
                    if args.json:
                        print(_json_line(_message_json(event)), file=out, flush=True)
                    else:
                        line = f"#{event.seq} {_time(event.timestamp)} {event.sender}: {event.text}"
                        print(line, file=out, flush=True)
                    received += 1
                    if args.count is not None and received >= args.count:
                        break
                elif isinstance(event, Gap):
                    if args.json:
                        print(_json_line(_gap_json(event)), file=out, flush=True)
                    else:
                        print(_gap_text(event), file=out, flush=True)
                elif not args.quiet:
                    _status(event, err)
        return EXIT_OK

    return _run(main)


# -- chat --------------------------------------------------------------------------------------


def run_chat(args: argparse.Namespace) -> int:
    async def main() -> int:
        out, err = sys.stdout, sys.stderr
        failures = 0
        async with _connect(args) as client, trio.open_nursery() as nursery:

            async def show() -> None:
                async for event in client:
                    if isinstance(event, Message):
                        print(f"[{_time(event.timestamp)}] {event.sender}: {event.text}", file=out)
                        out.flush()
                    elif isinstance(event, Gap):
                        print(_gap_text(event), file=out, flush=True)
                    elif isinstance(event, Connected):
                        _status(event, err)
                        print(f"-- you are {event.client_id}", file=err, flush=True)
                    else:
                        _status(event, err)

            nursery.start_soon(show)
            async for line in _lines(sys.stdin.fileno()):
                if not line.strip():
                    continue
                text = f"{args.name}: {line}" if args.name else line
                try:
                    ack = await client.publish(text)
                except PublishError as error:
                    failures += 1
                    print(f"-- not sent: {error}", file=err, flush=True)
                    continue
                print(f"[{_time(ack.timestamp)}] you: {text}", file=out, flush=True)
            nursery.cancel_scope.cancel()  # end of input: stop showing, leave
        return EXIT_PUBLISH_FAILED if failures else EXIT_OK

    return _run(main)


__all__ = ["run_chat", "run_listen", "run_send"]
