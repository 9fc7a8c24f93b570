"""Every change to Hypercorn's internals, in one place; installed when the app is created.

=====  ==========================================  ============================================
what   replaces                                    why
=====  ==========================================  ============================================
F1     ``WSStream._send_pings``, ``handle``        Hypercorn's pinger sleeps a whole
       (the pinger stops with the stream)          ``websocket_ping_interval`` before it looks
                                                   whether the stream closed; the connection's
                                                   task group waits for it, so every closed
                                                   WebSocket lingered and every graceful
                                                   shutdown ran into ``graceful_timeout``.
F2     ``TaskGroup.spawn_app`` (the app's          The channel to the app was never closed when
       receive queue closes when it returns)       the app returned: a client that kept sending
                                                   after its close filled it, Hypercorn's read
                                                   loop blocked for good and TCP stayed open.
                                                   The queue is now a list (``_AppQueue``), not
                                                   a memory channel: ~1.6 KB less per
                                                   connection.
F3     ``WSStream._handle_events``, ``handle``     Hypercorn closed an oversized message with
       (closes on the app's terms, nothing         1009 behind the app's back and kept
       buffered after a close)                     appending what the client streamed to its
                                                   buffer (a 2^40-byte frame grew the process by
                                                   hundreds of MB); a frame wsproto cannot parse
                                                   dropped TCP with no close frame. Both reach
                                                   the app as a ``trio_broadcast.close`` event
                                                   (``code``, ``reason``, ``wait``: whether a
                                                   close reply can still come); data after a
                                                   close is discarded unbuffered, and after a
                                                   parse failure not parsed at all. A client's
                                                   close reaches the app with its own code and
                                                   reason (Hypercorn said 1000 or 1006).
F4     the handshake, in ``spawn_app``;        permessage-deflate was negotiated with every
       ``WSStream._accept`` (compression is a      browser, and wsproto inflates a whole frame
       setting, off by default; when on, a         before any size check: a 20 KB frame became
       message is inflated only up to the size     20 MiB. Unless ``compression`` is on,
       limit)                                      offered extensions are ignored; when it is,
                                                   the negotiated extension inflates at most
                                                   ``websocket_max_message_size`` bytes per
                                                   message and fails it with 1009 beyond.
F5     ``TCPServer.run`` (a finished               Each connection's TCPServer, ProtocolWrapper,
       connection's objects let go of each         H11Protocol and WSStream hold each other
       other)                                      through the bound methods each hands the next
                                                   as ``send``: ~60 objects per connection that
                                                   only a full collection freed (57,000 after
                                                   3,000 connections, and RSS that stayed high).
                                                   When the connection's tasks have all ended,
                                                   their attributes are cleared. (DirectSender
                                                   refers back to its WSStream weakly.)
F6     ``WSStream._accept`` again (what only       Each WebSocket kept its request's headers
       the handshake needed is let go)             (in the handshake and the ASGI scope) and
                                                   h11's connection state for its whole life,
                                                   though nothing reads them after the 101:
                                                   ~2 KB per connection for a minimal request,
                                                   more for a browser's. The scope's
                                                   ``headers`` is emptied once the app has
                                                   accepted (the endpoint has read them),
                                                   h11's pause event (for pipelined requests)
                                                   is a shared one that is always set, and
                                                   wsproto's event queue a list (an empty
                                                   deque is ~700 B).
S1     ``TCPServer.protocol_send`` (write          Each frame Hypercorn sends takes the send lock
       without a scheduling round)                 and calls ``send_all``: two checkpoints, two
                                                   task switches around one ``write(2)``. The
                                                   replacement writes at once when the socket is
                                                   free and takes it all; otherwise (or for TLS)
                                                   Hypercorn's own path sends the rest, after any
                                                   tail a DirectSender left.
S2     (new) :class:`DirectSender`, the ASGI       Writes whole frames as bytes: from the hub's
       scope extension ``DIRECT_SEND``             pass without waiting (``write_nowait``), or
                                                   many in one write from a connection's writer
                                                   (``write``). A server's frames are unmasked,
                                                   so a broadcast's bytes are the same for every
                                                   client and are built once.
S3     ``WSStream._send_pings`` again (one       A pinger task per connection (its coroutine,
       pinger for every connection)                cancel scopes, a sleep) is a few KB of each
                                                   idle connection and a write per accept. When
                                                   a connection's frames go through its
                                                   DirectSender, Hypercorn's pinger returns at
                                                   once and the app's hub pings every client it
                                                   writes directly, in one pass per
                                                   ``ping_interval``.
S4     ``TCPServer._read_data`` (reads the         Each read went through ``receive_some``
       socket itself)                              inside ``fail_after``: two context managers
                                                   and a cancel scope per read, kept alive
                                                   while an idle connection waits (~1.5 KB of
                                                   each). A read that finds data now takes it
                                                   at once; only the wait for data has a
                                                   cancel scope, with ``read_timeout``.
S5     ``spawn_app``'s ``send`` and the stream's  A WebSocket's app task lived as long as the
       ``app_put`` (a detached connection:         connection, mostly waiting in ``receive``:
       ``DirectSender.detach``, ``spawn``,         the task, the call chain from Hypercorn to
       ``finish``)                                 our reader and its queue were ~5 KB of each
                                                   idle connection, and every client frame
                                                   woke it. Once the app has greeted the client
                                                   it hands the connection over and returns:
                                                   Hypercorn's read loop calls the handler's
                                                   ``deliver`` with each event, the app's
                                                   return does not close the stream, tasks of
                                                   the connection (its writers) start in the
                                                   connection's task group, and F5 tells the
                                                   handler when the last one has ended.
S6     ``TrioSingleTask.restart``, ``stop``     Every connection starts Hypercorn's idle-
       from a plain connection's read loop (its    timeout task before its request and stops
       first idle timeout starts when the loop     it when the request comes: at once for a
       is about to wait for data)                  WebSocket, whose upgrade is usually there
                                                   already. ``nursery.start()`` waited a
                                                   scheduling round for a task that was then
                                                   cancelled: ~12 % of an accept. Now S4's loop
                                                   starts it only when it is about to wait.
                                                   From an app's task (an HTTP keep-alive
                                                   connection after a response) Hypercorn's
                                                   own ``restart`` runs: there its ``start()``
                                                   ends the new task at once, and a plain
                                                   start would change how long such
                                                   connections stay open.
S7     ``TCPServer.run`` for plain TCP (in F5's   Every plain connection entered a TLS
       wrapper)                                    handshake's timeout scope to find, by an
                                                   AttributeError, that it is not TLS (~5 % of
                                                   an accept). The same steps, without that.
R1     nothing: reads the ``shutdown_event``      Under the plain Hypercorn CLI the master stops
       argument of the worker's process            its workers by setting this event and then
       (:func:`hypercorn_shutdown_event`)          cancelling them; clients got no close frame.
                                                   ``server/asgi.py`` watches it and closes every
                                                   client with 1001 first. Not there (no master,
                                                   another Hypercorn): Hypercorn's own way.
=====  ==========================================  ============================================

All of them were written against Hypercorn 0.18 and wsproto 1.2 and 1.3, the ranges
pyproject.toml pins. The fixes (F) are always installed. The shortcuts (S) rely on more internals
(the socket, the send lock, wsproto's state), so they are installed only for those versions
(``_SHORTCUTS_FOR``), and not when the environment variable ``TRIO_BROADCAST_SHORTCUTS`` is
``off``: then the server runs on Hypercorn's own send path, one ASGI message per frame, only
slower. CI runs the integration and fault tests both ways (``make test-unpatched``).
"""

from __future__ import annotations

import collections
import contextlib
import functools
import math
import multiprocessing
import os
import weakref
import zlib
from collections.abc import Awaitable, Callable
from importlib.metadata import version
from typing import Any, Protocol, cast

import trio
from hypercorn.events import Closed, RawData
from hypercorn.protocol import ProtocolWrapper
from hypercorn.protocol.events import Data, StreamClosed
from hypercorn.protocol.h11 import H11WSConnection
from hypercorn.protocol.ws_stream import ASGIWebsocketState, FrameTooLargeError, WSStream
from hypercorn.trio import task_group, tcp_server, worker_context
from hypercorn.typing import ConnectionState as HttpConnectionState
from hypercorn.utils import parse_socket_addr
from wsproto.connection import ConnectionState
from wsproto.events import CloseConnection, Message, Ping
from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import CloseReason, Opcode, RsvBits

_SHORTCUTS_FOR = {"hypercorn": ("0.18.",), "wsproto": ("1.2.", "1.3.")}

_PATCHED = "_trio_broadcast_pinger"


async def _send_pings(self: Any) -> None:  # F1, S3
    if self._pinged_by_app and _frames_plain_text(self):
        return  # S3: the app pings it with the rest, through its DirectSender
    with trio.CancelScope() as scope:
        self._ping_scope = scope
        while not self.closed:
            await self._send_wsproto_event(Ping())
            await trio.sleep(self.config.websocket_ping_interval)


class _AppQueue:
    """F2: what Hypercorn's read loop hands the app (its ASGI ``receive``).

    Bounded at ``max_app_queue_size``: the read loop waits while it is full. Closed when the app
    returns; what comes after is dropped, so a client that keeps sending cannot block the read
    loop. (A memory channel did this at ~2 KB per connection: here a list, and the task that
    waits, parked as a memory channel parks it; never both sides at once, as the queue cannot be
    full and empty at the same time.)
    """

    __slots__ = ("_closed", "_events", "_limit", "_waiter")

    def __init__(self, limit: int) -> None:
        self._events: list[Any] = []
        self._limit = max(1, limit)
        self._closed = False
        self._waiter: trio.lowlevel.Task | None = None  # the app waiting, or the loop for room

    async def put(self, event: Any) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()
        while len(self._events) >= self._limit and not self._closed:
            await self._wait()
        if not self._closed:
            self._events.append(event)
            self._wake()

    async def receive(self) -> Any:
        await trio.lowlevel.checkpoint_if_cancelled()
        while not self._events:
            await self._wait()
        self._wake()
        return self._events.pop(0)

    @property
    def waiting(self) -> bool:
        """Events wait for the app."""
        return bool(self._events)

    def close(self) -> None:
        self._closed = True
        self._events.clear()
        self._wake()

    async def _wait(self) -> None:
        self._waiter = trio.lowlevel.current_task()

        def abort(_: Any) -> trio.lowlevel.Abort:
            self._waiter = None
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            trio.lowlevel.reschedule(waiter)


async def _spawn_app(self: Any, app: Any, config: Any, scope: Any, send: Any) -> Any:
    queue = _AppQueue(config.max_app_queue_size)

    async def send_after_closing_intake(message: Any) -> None:
        if message is None:  # the app has finished: unblock and refuse further frames first
            queue.close()
            if getattr(ws, "_detached", None) is not None:
                return  # S5: the connection goes on without the app's task
        await send(message)

    ws = getattr(send, "__self__", None)
    if isinstance(ws, WSStream) and not getattr(config, "trio_broadcast_compression", False):
        ws.handshake.extensions = None  # F4: before the app can accept, no extension offered
    if _shortcuts_apply():
        _offer_direct_send(scope, send, self._nursery)
    self._nursery.start_soon(
        task_group._handle,
        app,
        config,
        scope,
        queue.receive,
        send_after_closing_intake,
        trio.to_thread.run_sync,
        trio.from_thread.run,
    )
    return queue.put


CLOSE_EVENT = "trio_broadcast.close"  # ASGI receive event: close with ``code`` (F3)
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
        return  # F3: after a parse failure, not fed to wsproto, whose parser state is undefined
    await _hypercorn_ws_handle(self, event)
    scope = self._ping_scope  # F1: the pinger stops with the stream
    if self.closed and scope is not None:
        scope.cancel()


class BoundedDeflate(PerMessageDeflate):
    """F4: permessage-deflate that inflates a message only up to ``max_inflated`` bytes.

    wsproto's inflates each frame whole, whatever it grows to; here a message that would pass
    the limit fails with 1009 as it is inflated, having allocated at most the limit.
    """

    max_inflated = 0  # bytes a message may inflate to; set per connection
    _inflated = 0  # bytes the current message has inflated to

    def frame_inbound_header(
        self, proto: Any, opcode: Opcode, rsv: RsvBits, payload_length: int
    ) -> CloseReason | RsvBits:
        if self._inbound_compressed is None:  # a new message begins
            self._inflated = 0
        return super().frame_inbound_header(proto, opcode, rsv, payload_length)

    def frame_inbound_payload_data(self, proto: Any, data: bytes) -> bytes | CloseReason:
        if not self._inbound_compressed or not self._inbound_is_compressible:
            return data
        return self._inflate(bytes(data))

    def frame_inbound_complete(self, proto: Any, fin: bool) -> bytes | CloseReason | None:
        if not (fin and self._inbound_compressed and self._inbound_is_compressible):
            return super().frame_inbound_complete(proto, fin)
        tail = self._inflate(b"\x00\x00\xff\xff")  # the end of a compressed message
        if isinstance(tail, CloseReason):
            return tail
        if self.client_no_context_takeover:
            self._decompressor = None
        self._inbound_compressed = None
        return tail

    def _inflate(self, data: bytes) -> bytes | CloseReason:
        assert self._decompressor is not None
        room = self.max_inflated - self._inflated
        try:
            inflated = self._decompressor.decompress(data, room + 1)
        except zlib.error:
            return CloseReason.INVALID_FRAME_PAYLOAD_DATA
        self._inflated += len(inflated)
        if self._inflated > self.max_inflated or self._decompressor.unconsumed_tail:
            return CloseReason.MESSAGE_TOO_BIG
        return inflated


_hypercorn_accept = WSStream._accept


class _Accepted:
    """F6: what stays of an accepted WebSocket's handshake (all Hypercorn reads after it)."""

    accepted = True


_ACCEPTED = _Accepted()


class _EventList(list[Any]):
    """F6: wsproto's queue of the events one read parsed, as a list: an empty deque is ~700 B
    (its first block), a list 56. wsproto appends, pops from the left and tests it for being
    empty; it holds a few events at a time."""

    __slots__ = ()

    def popleft(self) -> Any:
        return self.pop(0)


class _NeverPaused:
    """F6: ``H11Protocol.can_read`` once upgraded: set at the end, never waited on."""

    async def set(self) -> None:
        pass

    async def clear(self) -> None:  # pragma: no cover - h11 is not consulted after the upgrade
        raise AssertionError("an upgraded connection is never paused")

    async def wait(self) -> None:  # pragma: no cover
        raise AssertionError("an upgraded connection is never paused")

    def is_set(self) -> bool:
        return True


_NEVER_PAUSED = _NeverPaused()


async def _accept(self: Any, message: Any) -> None:
    """F4, F6: ``WSStream._accept``; a negotiated permessage-deflate inflates within the limit,
    and what only the handshake needed is let go."""
    await _hypercorn_accept(self, message)
    # F6: the 101 is sent and logged; from here on only ``handshake.accepted`` is read.
    self.handshake = _ACCEPTED
    connection = self.connection  # wsproto's, new with the accept
    if type(connection._events) is collections.deque and not connection._events:
        connection._events = _EventList()
    self.scope["headers"] = []  # the endpoint read what it needed before it accepted
    http = getattr(self.send, "__self__", None)  # H11Protocol (HTTP/1.1), or an H2 stream's
    upgraded = getattr(http, "connection", None)
    if http is not None and isinstance(upgraded, H11WSConnection):
        upgraded.h11_connection = None  # type: ignore[assignment]  # only frames pass now
        http.can_read = _NEVER_PAUSED  # h11 pauses between pipelined requests; none come now
    for extension in self.connection._proto.extensions:
        if type(extension) is PerMessageDeflate:
            extension.__class__ = BoundedDeflate
            cast(BoundedDeflate, extension).max_inflated = self.config.websocket_max_message_size


_hypercorn_tcp_run = tcp_server.TCPServer.run


async def _tcp_run(self: Any) -> None:
    """F5: ``TCPServer.run``, then the connection's objects let go of each other."""
    try:
        if type(self.stream) is trio.SocketStream and _shortcuts_apply():
            await _plain_tcp_run(self)  # S7
        else:
            await _hypercorn_tcp_run(self)
    finally:
        # TCPServer -> ProtocolWrapper -> H11Protocol -> WSStream, and back through the bound
        # methods each hands the next as ``send``: a cycle of ~60 objects per connection that
        # only a full collection frees. Every task of the connection has ended here.
        wrapper = self.__dict__.get("protocol")
        protocol = getattr(wrapper, "protocol", None)
        stream = getattr(protocol, "stream", None)
        detached = self.__dict__.get("_detached")
        if detached is not None:  # S5: its last task has ended too
            detached.connection_lost()
        for part in (stream, protocol, wrapper, self):
            if part is not None:
                part.__dict__.clear()


async def _plain_tcp_run(self: Any) -> None:
    """S7: ``TCPServer.run`` for a plain TCP stream, as Hypercorn 0.18 runs it after trying
    a TLS handshake (a timeout scope entered, an AttributeError raised and caught: ~5 % of an
    accept)."""
    try:
        socket = self.stream.socket
        client = parse_socket_addr(socket.family, socket.getpeername())
        server = parse_socket_addr(socket.family, socket.getsockname())
        async with task_group.TaskGroup() as group:
            self._task_group = group
            self.protocol = ProtocolWrapper(
                self.app,
                self.config,
                self.context,
                group,
                HttpConnectionState(self.state),
                False,
                client,
                server,
                self.protocol_send,
                "http/1.1",
            )
            await self.protocol.initiate()
            await self.idle_task.restart(self._task_group, self._idle_timeout)
            await self._read_data()
    except OSError:
        pass
    finally:
        await self._close()


_hypercorn_read_data = tcp_server.TCPServer._read_data


async def _read_data(self: Any) -> None:
    """S4: ``TCPServer._read_data``, reading the socket itself.

    Hypercorn's loop reads through ``SocketStream.receive_some`` inside ``fail_after``: two
    context managers and a cancel scope per read, all kept alive while an idle connection waits
    (~1.5 KB each). Here a read that finds data takes it at once; only waiting for data has a
    cancel scope, with the same deadline (``read_timeout``).
    """
    if type(self.stream) is not trio.SocketStream:
        await _hypercorn_read_data(self)
        return
    sock = self.stream.socket
    recv = sock._sock.recv  # type: ignore[attr-defined]  # the stdlib socket (non-blocking)
    timeout = self.config.read_timeout or math.inf
    handle = self.protocol.handle
    while True:
        try:
            data = recv(tcp_server.MAX_RECV)
        except BlockingIOError:
            data = None  # (waiting outside the except block: the error is not kept meanwhile)
        except OSError:  # reset, or closed
            break
        if data is None:
            _start_idle_timeout(self)  # S6: Hypercorn's keep-alive timeout, now it is idle
            with trio.move_on_after(timeout) as waiting:
                try:
                    await trio.lowlevel.wait_readable(sock)
                except trio.ClosedResourceError:  # closed by the server meanwhile
                    break
            if waiting.cancelled_caught:  # idle for read_timeout
                break
            continue
        await handle(RawData(data))
        if not data:
            break
        await trio.lowlevel.checkpoint()  # as receive_some does: a flood cannot hog the loop
    await self.protocol.handle(Closed())


_hypercorn_restart = worker_context.TrioSingleTask.restart
_hypercorn_stop = worker_context.TrioSingleTask.stop


async def _single_task_restart(self: Any, task_group: Any, action: Any) -> None:
    """S6: ``TrioSingleTask.restart``. From a plain connection's own read loop (its first idle
    timeout, before the request) the task is not started yet: S4's loop starts it when it is
    about to wait for data (:func:`_start_idle_timeout`), so a request already there, as a
    WebSocket upgrade usually is, stops it before it ever ran."""
    server = getattr(action, "__self__", None)
    if (
        task_group._nursery.parent_task is not trio.lowlevel.current_task()
        or self._lock.locked()
        or type(getattr(server, "stream", None)) is not trio.SocketStream
    ):
        self._deferred = None
        await _hypercorn_restart(self, task_group, action)  # from an app's task: as Hypercorn
        return
    if self._handle is not None:
        self._handle.cancel()
    self._handle = trio.CancelScope()  # stop() cancels it, started or not
    self._deferred = (task_group._nursery, action)


async def _single_task_stop(self: Any) -> None:
    """S6: ``TrioSingleTask.stop``; a task not started yet is dropped."""
    self._deferred = None
    if self._lock.locked():
        await _hypercorn_stop(self)
        return
    if self._handle is not None:
        self._handle.cancel()
    self._handle = None


def _start_idle_timeout(server: Any) -> None:
    """S6: start the idle-timeout task that ``restart`` left for the read loop, if any."""
    single = server.idle_task
    deferred = single._deferred
    if deferred is not None:
        single._deferred = None
        nursery, action = deferred
        nursery.start_soon(_run_in_scope, single._handle, action)


async def _run_in_scope(scope: trio.CancelScope, action: Callable[[], Awaitable[object]]) -> None:
    with scope:
        await action()


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
    """Writes whole frames, as bytes, on one Hypercorn WebSocket (S2).

    Offered to the app as the ASGI scope extension ``DIRECT_SEND``: only for plain TCP (not TLS)
    HTTP/1.1 WebSockets, and only with the shortcuts installed. Frames written here bypass
    wsproto, so both methods first check that the connection is open with no message half sent.
    """

    def __init__(self, ws: Any, server: Any, nursery: trio.Nursery) -> None:
        # The WSStream holds this (in its ASGI scope): a weak reference back, so that the two
        # make no reference cycle.
        self._ws = weakref.proxy(ws)  # protocol state
        self._server = server  # the TCPServer: the socket, its send lock, the pending tail
        self._lock = server.send_lock  # Hypercorn's sends hold it
        self._socket = server.stream.socket._sock  # the stdlib socket (non-blocking)
        self._nursery = nursery  # the connection's task group (Hypercorn's, per TCP connection)

    def spawn(self, async_fn: Callable[..., Awaitable[object]], *args: Any) -> None:
        """Start a task in the connection's own task group: it is part of the connection, which
        ends when its last task has. Nothing once the task group has closed (it is ending).

        An error that escapes the task is handled as Hypercorn handles one that escapes an app:
        logged ("Error in ASGI Framework") and the connection closed (1011 if it is open).
        """
        with contextlib.suppress(RuntimeError):  # "Nursery is closed to new arrivals"
            self._nursery.start_soon(self._guarded, async_fn, *args)

    async def _guarded(self, async_fn: Callable[..., Awaitable[object]], *args: Any) -> None:
        try:
            await async_fn(*args)
        except Exception:  # noqa: BLE001 - logged, as Hypercorn logs what escapes an app
            await self._server.config.log.exception("Error in ASGI Framework")
            await self.finish()

    def detach(self, handler: Detached) -> bool:
        """S5: from now on Hypercorn hands what it would put in the app's ``receive`` to
        ``handler.deliver`` instead, in its own read loop, and the app may return while the
        WebSocket stays open; ``handler.connection_lost()`` is called once every task of the
        connection has ended. False, changing nothing, while events wait for the app (take
        them first) or once the stream has closed."""
        ws: Any = self._ws
        queue = getattr(ws.app_put, "__self__", None)
        if ws.closed or not isinstance(queue, _AppQueue) or queue.waiting:
            return False
        ws._detached = handler  # the app's return does not close the stream
        ws.app_put = handler.deliver
        self._server._detached = handler  # told when the connection's last task has ended
        return True

    async def finish(self) -> None:
        """For a detached connection: what Hypercorn does when an app returns (after a close
        frame, the TCP connection is closed)."""
        await self._ws.app_send(None)

    def usable(self) -> bool:
        """Whether frames can be written as bytes now (the connection is open, plain)."""
        return _frames_plain_text(self._ws)

    def write_nowait(self, data: bytes) -> int:
        """Write what the socket takes now; never blocks, never yields.

        Returns -1 when nothing was written (the socket is full or failed, another send is
        under way, or the connection is not open), else the number of bytes written. A short
        write leaves the rest pending: it goes out before anything else is sent on the
        connection (:meth:`write` sends it). The hub's pass calls this once per client: it is
        kept to the checks that matter and one ``send(2)``.
        """
        server = self._server
        if (
            server._pending_tail is not None
            or self._lock.locked()
            or not _frames_plain_text(self._ws)
        ):
            return -1
        try:
            sent: int = self._socket.send(data)  # a closed socket's fd is -1: OSError
        except OSError:  # full (BlockingIOError), reset, closed: the writer's path reports it
            return -1
        if sent < len(data):
            server._pending_tail = data[sent:]
        return sent

    async def write(self, data: bytes) -> bool:
        """Write ``data`` after any pending tail, waiting for room. A checkpoint.

        Returns False, writing nothing but the tail, when the connection is no longer open for
        frames as bytes (use the ASGI ``send``).
        """
        plain = _frames_plain_text(self._ws)
        if plain or self._server._pending_tail is not None:
            await self._server.protocol_send(RawData(data=data if plain else b""))
        return plain


DIRECT_SEND = "trio_broadcast.direct_send"  # ASGI scope extension: a DirectSender


class Detached(Protocol):
    """What a detached connection's app leaves Hypercorn to call (S5)."""

    async def deliver(self, message: dict[str, Any]) -> None:
        """An ASGI receive event, from Hypercorn's read loop (which waits for it)."""

    def connection_lost(self) -> None:
        """Every task of the connection has ended (never blocks)."""


def _offer_direct_send(scope: Any, send: Any, nursery: trio.Nursery) -> None:
    ws = getattr(send, "__self__", None)
    if not isinstance(ws, WSStream):
        return
    server = getattr(getattr(ws.send, "__self__", None), "send", None)
    server = getattr(server, "__self__", None)
    stream = getattr(server, "stream", None)
    if isinstance(server, tcp_server.TCPServer) and type(stream) is trio.SocketStream:
        scope.setdefault("extensions", {})[DIRECT_SEND] = DirectSender(ws, server, nursery)
        ws._pinged_by_app = True  # type: ignore[attr-defined]  # S3: the hub pings it


def _frames_plain_text(ws: Any) -> bool:
    """The WebSocket is open, with no extension and no message half sent: a text frame may be
    built outside wsproto."""
    if ws.closed or ws.state is not ASGIWebsocketState.CONNECTED:
        return False
    connection = ws.connection
    proto = connection._proto
    return (
        connection._state is ConnectionState.OPEN
        and proto._outbound_opcode is None
        and not proto.extensions
    )


class SharedEvent(Protocol):
    """A ``multiprocessing`` event, as far as it is used here."""

    def is_set(self) -> bool: ...


def hypercorn_shutdown_event() -> SharedEvent | None:
    """R1: the event a Hypercorn master sets to stop its workers (on SIGTERM/SIGINT), if any.

    Hypercorn (0.18: ``hypercorn.run._populate``) starts each worker process with the event as
    its target's ``shutdown_event`` argument, so it is in this process's own ``multiprocessing``
    record. None when there is none (no master, or another Hypercorn).
    """
    kwargs = getattr(multiprocessing.current_process(), "_kwargs", None)
    event = kwargs.get("shutdown_event") if isinstance(kwargs, dict) else None
    return event if callable(getattr(event, "is_set", None)) else None


SHORTCUTS_VARIABLE = "TRIO_BROADCAST_SHORTCUTS"  # "off": Hypercorn's own send path only


@functools.cache
def _shortcuts_apply() -> bool:
    if os.environ.get(SHORTCUTS_VARIABLE, "").lower() in {"off", "0", "false", "no"}:
        return False
    return all(version(name).startswith(known) for name, known in _SHORTCUTS_FOR.items())


def install() -> None:
    """Install F1-F6, and S1-S7 where they apply (see the table above; idempotent)."""
    if getattr(WSStream, _PATCHED, False):
        return
    task_group.TaskGroup.spawn_app = _spawn_app  # type: ignore[method-assign]
    tcp_server.TCPServer.run = _tcp_run  # type: ignore[method-assign]
    if _shortcuts_apply():
        tcp_server.TCPServer._pending_tail = None  # type: ignore[attr-defined]
        tcp_server.TCPServer.protocol_send = _protocol_send  # type: ignore[method-assign]
        tcp_server.TCPServer._read_data = _read_data  # type: ignore[method-assign]
        worker_context.TrioSingleTask._deferred = None  # type: ignore[attr-defined]
        worker_context.TrioSingleTask.restart = _single_task_restart  # type: ignore[method-assign]
        worker_context.TrioSingleTask.stop = _single_task_stop  # type: ignore[method-assign]
    # Per-stream state of F1 and F3, as class defaults: set on the instance when it changes.
    for name, default in _STREAM_STATE.items():
        setattr(WSStream, name, default)
    WSStream._send_pings = _send_pings  # type: ignore[method-assign]
    WSStream.handle = _ws_handle  # type: ignore[method-assign]
    WSStream._handle_events = _handle_events  # type: ignore[method-assign]
    WSStream._accept = _accept  # type: ignore[method-assign]
    setattr(WSStream, _PATCHED, True)


_STREAM_STATE = {
    "_ping_scope": None,  # F1: the pinger's cancel scope
    "_discarding": False,  # F3: inside a message that was refused (too big)
    "_closing_told": False,  # F3: the app was told to close
    "_unparsable": False,  # F3: wsproto failed to parse; received data is ignored
    "_pinged_by_app": False,  # S3: the app pings it (no pinger task of its own)
    "_detached": None,  # S5: the handler Hypercorn delivers to once the app has returned
}
