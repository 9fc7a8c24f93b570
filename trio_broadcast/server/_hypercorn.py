"""Three fixes and three shortcuts for Hypercorn (0.17, 0.18), installed when the app is created.

1. **The pinger.** Hypercorn sends pings from a task that sleeps ``websocket_ping_interval``
   between pings and only then looks whether the connection closed. The connection's task group
   waits for that task, so every closed WebSocket lingers (memory, a task) for up to a whole ping
   interval, and a graceful shutdown always runs into ``graceful_timeout``. The replacement pinger
   runs in a cancel scope that is cancelled as soon as the stream is closed.
2. **Frames after the app finished.** Hypercorn hands received frames to the app through a
   bounded channel and never closes it when the app returns. A client that keeps sending after
   the server closed it (e.g. a flood that earned a 1008) fills the channel, Hypercorn's read loop
   blocks on it forever, never sees the client's close reply, and the TCP connection stays open
   until shutdown. The replacement drops frames once the app has finished.
3. **Closes on the app's terms, with nothing buffered after them.** Hypercorn answers a message
   over ``websocket_max_message_size`` with a 1009 close of its own and does not tell the app, yet
   keeps appending what the client still sends to its message buffer: a client that declares a
   2^40-byte frame and streams into it grew the process by hundreds of MB, kept its connection
   counted, and was logged as having left. On a frame wsproto cannot parse (bad UTF-8, reserved
   bits, an invalid close code...) it dropped TCP with no close frame at all, and the app was
   told only "1006". The replacement event handler hands each of these to the app as a
   ``trio_broadcast.close`` event (``code``, ``reason``, ``wait``: whether a close reply can still
   come), so the app closes with that code, logs it and lets go of the connection within its
   close timeout; after a close (ours or the app's) received data messages are discarded
   unbuffered, and after a parse failure raw data is not even parsed. A close frame from the
   client reaches the app with its own code and reason (Hypercorn reported 1000 or 1006).
4. **Sending without a scheduling round.** Every frame Hypercorn sends takes its connection's
   send lock and calls ``send_all``: each of the two is a checkpoint that yields to the scheduler,
   so one frame costs two task switches besides the write itself; with a thousand writers that
   was most of the server's time per frame. The replacement writes at once when nobody else is
   sending on that connection and the socket takes the whole frame, which it does unless the
   peer has stopped reading; otherwise (or for TLS) it falls back to Hypercorn's own path for
   whatever is left. Hypercorn already sends inside a shielded scope, so cancellation is
   unaffected.
5. **Framing text without wsproto's state machine.** A server's text frame is a two-to-ten byte
   header and the UTF-8 payload. When the connection is open and no extension (permessage-deflate)
   was negotiated, wsproto's ``send`` only builds that header, through several layers of calls
   and copies; the replacement builds it directly. Anything else goes through wsproto.

6. **Writing from another task.** :class:`DirectSender`, offered to the app as the ASGI scope
   extension ``DIRECT_SEND``, writes a text frame at once or refuses without writing anything;
   a frame the socket took only in part leaves its tail pending, and the tail goes out before
   anything else is sent on that connection. The hub's tick writes to many clients through it
   in one pass (see :meth:`.hub.Hub.park`).

Fixes 1-3 are always installed. The two shortcuts rely on internals, so they are installed
only for the Hypercorn and wsproto versions they were written against (see ``_SHORTCUTS_FOR``);
with any other version the server runs on Hypercorn's own paths, only slower.
"""

from __future__ import annotations

import contextlib
import functools
import os
import struct
from importlib.metadata import version
from typing import Any

import trio
from hypercorn.events import Closed, RawData
from hypercorn.protocol.events import Data, StreamClosed
from hypercorn.protocol.ws_stream import ASGIWebsocketState, FrameTooLargeError, WSStream
from hypercorn.trio import task_group, tcp_server
from wsproto.connection import ConnectionState
from wsproto.events import CloseConnection, Message, Ping
from wsproto.frame_protocol import CloseReason

_SHORTCUTS_FOR = {"hypercorn": ("0.17.", "0.18."), "wsproto": ("1.2.", "1.3.")}

_PATCHED = "_trio_broadcast_pinger"


async def _send_pings(self: Any) -> None:  # fix 1
    with trio.CancelScope() as scope:
        self._ping_scope = scope
        while not self.closed:
            await self._send_wsproto_event(Ping())
            await trio.sleep(self.config.websocket_ping_interval)


async def _spawn_app(self: Any, app: Any, config: Any, scope: Any, send: Any) -> Any:
    app_send_channel, app_receive_channel = trio.open_memory_channel[Any](config.max_app_queue_size)

    async def send_after_closing_intake(message: Any) -> None:
        if message is None:  # the app has finished: unblock and refuse further frames first
            app_receive_channel.close()
        await send(message)

    async def put(event: Any) -> None:
        with contextlib.suppress(trio.BrokenResourceError):  # the app finished: drop it
            await app_send_channel.send(event)

    if _shortcuts_apply():
        _offer_direct_send(scope, send)
    self._nursery.start_soon(
        task_group._handle,
        app,
        config,
        scope,
        app_receive_channel.receive,
        send_after_closing_intake,
        trio.to_thread.run_sync,
        trio.from_thread.run,
    )
    return put


CLOSE_EVENT = "trio_broadcast.close"  # ASGI receive event: close with ``code`` (fix 3)
# wsproto reports a parse failure as a CloseConnection event without changing its state; a
# real close frame moves it to REMOTE_CLOSING or CLOSED.
_UNCHANGED_BY_A_CLOSE_FRAME = (ConnectionState.OPEN, ConnectionState.LOCAL_CLOSING)


async def _handle_events(self: Any) -> None:
    """``WSStream._handle_events``: closes the app decides, nothing buffered after a close."""
    for event in self.connection.events():
        if isinstance(event, Message):
            if self.state is not ASGIWebsocketState.CONNECTED or self._discarding:
                # After a close, or inside a message already refused: dropped unbuffered.
                self._discarding = self._discarding and not event.message_finished
                continue
            try:
                self.buffer.extend(event)
            except FrameTooLargeError:
                self.buffer.clear()
                self._discarding = not event.message_finished
                await _tell_app_to_close(self, CloseReason.MESSAGE_TOO_BIG, "message too big")
                continue
            if event.message_finished:
                await self.app_put(self.buffer.to_message())
                self.buffer.clear()
        elif isinstance(event, Ping):
            await self._send_wsproto_event(event.response())
        elif isinstance(event, CloseConnection):
            if self.connection.state in _UNCHANGED_BY_A_CLOSE_FRAME:
                # Not a close frame: wsproto could not parse what came (its state is undefined
                # from here on, so nothing more is parsed). Fail the connection (RFC 6455 7.1.7).
                self._unparsable = True
                if self.state is ASGIWebsocketState.CONNECTED:
                    reason = event.reason or "protocol error"
                    await _tell_app_to_close(self, event.code, reason, wait=False)
                else:  # the app has closed already: no close reply can come now
                    await self.send(StreamClosed(stream_id=self.stream_id))
                return
            if self.connection.state is ConnectionState.REMOTE_CLOSING:
                await self._send_wsproto_event(event.response())
            if self.app_put is not None:  # the client's own code and reason, before "closed"
                code, reason = int(event.code), event.reason or ""
                await self.app_put({"type": "websocket.disconnect", "code": code, "reason": reason})
            await self.send(StreamClosed(stream_id=self.stream_id))


async def _tell_app_to_close(self: Any, code: int, reason: str, wait: bool = True) -> None:
    if self.state is ASGIWebsocketState.CONNECTED and not self._closing_told:
        self._closing_told = True
        await self.app_put({"type": CLOSE_EVENT, "code": int(code), "reason": reason, "wait": wait})


_hypercorn_ws_handle = WSStream.handle


async def _ws_handle(self: Any, event: Any) -> None:
    if type(event) is Data and self._unparsable:
        return  # after a parse failure: not fed to wsproto, whose parser state is undefined
    await _hypercorn_ws_handle(self, event)
    scope = self._ping_scope  # fix 1: the pinger stops with the stream
    if self.closed and scope is not None:
        scope.cancel()


_hypercorn_protocol_send = tcp_server.TCPServer.protocol_send


async def _protocol_send(self: Any, event: Any) -> None:
    if type(event) is not RawData or type(self.stream) is not trio.SocketStream:
        await _hypercorn_protocol_send(self, event)
        return
    data = event.data
    if self._pending_tail is None and not self.send_lock.locked():
        sent = _write_nowait(self, data)
        if sent is None:  # reset, timed out, or already closed: as send_all would report it
            await self.protocol.handle(Closed())
            return
        data = data[sent:]
        if not data:
            return
    async with self.send_lock:  # Hypercorn's own path, after any tail a DirectSender left
        tail, self._pending_tail = self._pending_tail, None
        if tail is not None:
            data = tail + data
        if not data:
            return
        try:
            with trio.CancelScope(shield=True):
                await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            await self.protocol.handle(Closed())


def _write_nowait(server: Any, data: bytes) -> int | None:
    """Write what the socket takes now: the number of bytes, or None if the socket failed."""
    try:
        return os.write(server.stream.socket.fileno(), data)
    except BlockingIOError:
        return 0
    except OSError:
        return None


class DirectSender:
    """Writes text frames on one Hypercorn WebSocket from any task, without waiting.

    Offered to the app as the ASGI scope extension ``DIRECT_SEND``. Only for plain TCP
    (not TLS) HTTP/1.1 WebSockets without extensions, and only with the shortcuts installed.
    """

    def __init__(self, ws: Any, server: Any) -> None:
        self._ws = ws  # the WSStream: protocol state
        self._server = server  # the TCPServer: the socket, its send lock, the pending tail

    def send_nowait(self, text: str) -> int:
        """Write one text frame now.

        Returns -1 when nothing was written (the socket is busy or full, or the connection is
        not open; use the ASGI ``send``), 0 when the whole frame was written, and otherwise the
        number of bytes left over: they go out before anything else is sent on the connection,
        and :meth:`flush` waits for them.
        """
        ws = self._ws
        server = self._server
        if (
            server._pending_tail is not None
            or server.send_lock.locked()
            or not _frames_plain_text(ws)
        ):
            return -1
        data = _frame_shared(text)
        sent = _write_nowait(server, data)
        if not sent:  # would block, or failed: the ASGI send reports it properly
            return -1
        if sent < len(data):
            server._pending_tail = data[sent:]
        return len(data) - sent

    async def flush(self) -> None:
        """Wait until a left-over tail is written. A checkpoint."""
        await self._server.protocol_send(RawData(data=b""))


DIRECT_SEND = "trio_broadcast.direct_send"  # ASGI scope extension: a DirectSender


def _offer_direct_send(scope: Any, send: Any) -> None:
    ws = getattr(send, "__self__", None)
    if not isinstance(ws, WSStream):
        return
    server = getattr(getattr(ws.send, "__self__", None), "send", None)
    server = getattr(server, "__self__", None)
    stream = getattr(server, "stream", None)
    if isinstance(server, tcp_server.TCPServer) and type(stream) is trio.SocketStream:
        scope.setdefault("extensions", {})[DIRECT_SEND] = DirectSender(ws, server)


_hypercorn_app_send = WSStream.app_send


async def _app_send(self: Any, message: Any) -> None:
    if (
        message is not None
        and message["type"] == "websocket.send"
        and message.get("bytes") is None
        and type(text := message.get("text")) is str
        and _frames_plain_text(self)
    ):
        await self.send(Data(stream_id=self.stream_id, data=text_frame(text.encode())))
        return
    await _hypercorn_app_send(self, message)


def _frames_plain_text(ws: Any) -> bool:
    """The WebSocket is open, with no extension and no message half sent: a text frame may be
    built by :func:`text_frame` instead of wsproto."""
    proto = ws.connection._proto if ws.state is ASGIWebsocketState.CONNECTED else None
    return (
        proto is not None
        and not ws.closed
        and ws.connection.state is ConnectionState.OPEN
        and not proto.extensions
        and proto._outbound_opcode is None
    )


_last_framed: list[tuple[str, bytes]] = []  # the text DirectSender framed last, and its frame


def _frame_shared(text: str) -> bytes:
    """``text`` as a text frame; the same text object sent again (the hub's tick writes one
    text to every client that keeps up) is not encoded again."""
    if _last_framed and _last_framed[0][0] is text:
        return _last_framed[0][1]
    data = text_frame(text.encode())
    _last_framed[:] = [(text, data)]
    return data


def text_frame(payload: bytes) -> bytes:
    """A final, unmasked text frame (RFC 6455 §5.2) carrying ``payload``."""
    length = len(payload)
    if length < 126:
        return bytes((0x81, length)) + payload
    if length < 1 << 16:
        return struct.pack("!BBH", 0x81, 126, length) + payload
    return struct.pack("!BBQ", 0x81, 127, length) + payload


@functools.cache
def _shortcuts_apply() -> bool:
    return all(version(name).startswith(known) for name, known in _SHORTCUTS_FOR.items())


def install() -> None:
    """Replace ``WSStream._send_pings``, ``handle`` and ``_handle_events`` and
    ``TaskGroup.spawn_app``, and for known versions ``TCPServer.protocol_send`` and
    ``WSStream.app_send`` (idempotent)."""
    if getattr(WSStream, _PATCHED, False):
        return
    task_group.TaskGroup.spawn_app = _spawn_app  # type: ignore[method-assign]
    if _shortcuts_apply():
        tcp_server.TCPServer._pending_tail = None  # type: ignore[attr-defined]
        tcp_server.TCPServer.protocol_send = _protocol_send  # type: ignore[method-assign]
        WSStream.app_send = _app_send  # type: ignore[method-assign]
    # Per-stream state of fixes 1 and 3, as class defaults: set on the instance when it changes.
    for name, default in _STREAM_STATE.items():
        setattr(WSStream, name, default)
    WSStream._send_pings = _send_pings  # type: ignore[method-assign]
    WSStream.handle = _ws_handle  # type: ignore[method-assign]
    WSStream._handle_events = _handle_events  # type: ignore[method-assign]
    setattr(WSStream, _PATCHED, True)


_STREAM_STATE = {
    "_ping_scope": None,  # fix 1: the pinger's cancel scope
    "_discarding": False,  # fix 3: inside a message that was refused (too big)
    "_closing_told": False,  # fix 3: the app was told to close
    "_unparsable": False,  # fix 3: wsproto failed to parse; received data is ignored
}
