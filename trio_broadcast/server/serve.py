"""Run the app under Hypercorn's trio worker, with a graceful, bounded shutdown.

``serve(settings, task_status=...)`` works with ``nursery.start`` and reports where it listens.
The listening socket is made here, not by Hypercorn, so it can carry ``TCP_USER_TIMEOUT``: every
accepted socket inherits it, and the kernel then ends a peer that leaves sent data unacknowledged
(e.g. a zero TCP window) for ``write_timeout`` seconds. That is the one thing that frees a writer
stuck in Hypercorn's send, which runs in a shielded cancel scope and cannot be cancelled.
With ``certfile`` the socket is handed to Hypercorn as a secure one: TLS on the same port
(``https://`` and ``wss://``), HTTP/1.1 only.
"""

from __future__ import annotations

import gc
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable
from functools import partial

import attrs
import structlog
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.config import Sockets
from hypercorn.trio.run import worker_serve
from hypercorn.utils import wrap_app

from ..errors import BroadcastError
from .app import BroadcastApp, create_app
from .config import Settings

log = structlog.get_logger("trio_broadcast.server.serve")

LISTEN_BACKLOG = 2048  # pending connections; bursts of thousands of clients reconnecting


class HubFailedError(BroadcastError):
    """The broadcaster failed for good; the server shut down."""


@attrs.frozen
class ServerInfo:
    """Where a started server listens."""

    host: str
    port: int
    secure: bool = False  # TLS: https:// and wss://

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.secure else 'http'}://{host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return "ws" + self.url.removeprefix("http") + "/ws/events"


def open_listener(settings: Settings) -> socket.socket:
    """A bound, listening TCP socket with the options every connection should inherit."""
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if settings.write_timeout is not None and hasattr(socket, "TCP_USER_TIMEOUT"):
            sock.setsockopt(
                socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(settings.write_timeout * 1000)
            )
        sock.bind((settings.host, settings.port))
        sock.listen(LISTEN_BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock


def hypercorn_config(settings: Settings) -> HypercornConfig:
    """Hypercorn settings derived from ours (the listening socket is handed over separately)."""
    config = HypercornConfig()
    config.backlog = LISTEN_BACKLOG
    config.websocket_max_message_size = settings.max_message_bytes
    config.websocket_ping_interval = settings.ping_interval
    # Any data, pongs included, resets it. Hypercorn hints int; it passes it to trio.fail_after.
    config.read_timeout = settings.idle_timeout  # type: ignore[assignment]
    config.graceful_timeout = settings.shutdown_timeout
    config.accesslog = "-" if settings.access_log else None
    config.errorlog = logging.getLogger("hypercorn.error")  # through our log setup
    config.include_server_header = False
    # Read by server/_hypercorn.py (F4); Hypercorn itself knows no such setting.
    config.trio_broadcast_compression = settings.compression  # type: ignore[attr-defined]
    if settings.certfile is not None:
        config.certfile = settings.certfile
        config.keyfile = settings.keyfile or settings.certfile
        # HTTP/1.1 only: /ws/events and its Hypercorn fixes are written for RFC 6455 upgrades,
        # not for WebSockets over HTTP/2 (RFC 8441), which browsers would pick after ALPN h2.
        config.alpn_protocols = ["http/1.1"]
    return config


def load_tls(config: HypercornConfig) -> bool:
    """Whether ``config`` serves TLS; loads its certificate and key now, to fail early.

    Raises:
        ssl.SSLError: the files are not a PEM certificate chain and its matching private key.
        OSError: a file cannot be read (e.g. ``FileNotFoundError``).
    """
    try:
        return config.create_ssl_context() is not None
    except ssl.SSLError as error:
        why = "not a PEM certificate and key" if error.reason is None else error.reason
        raise ssl.SSLError(
            f"cannot use certfile {config.certfile} with keyfile {config.keyfile}: {why}"
        ) from error
    except OSError as error:
        if error.filename is not None:
            raise
        # ssl names no file in its OSError: "[Errno 2] No such file or directory".
        raise OSError(
            error.errno,
            f"cannot read certfile {config.certfile} or keyfile {config.keyfile}: {error.strerror}",
        ) from error


GC_YOUNG_THRESHOLD = 5_000  # allocations between young collections (CPython's default: 700)
GC_MIDDLE_THRESHOLD = 4  # young collections between middle ones (CPython's default: 10)
GC_OLD_THRESHOLD = 100  # middle collections between full ones, at the least (default: 10)


def tune_gc() -> None:
    """Make garbage collection pauses rarer and shorter for a long-running server process.

    Everything loaded so far (modules, classes: hundreds of thousands of objects) is moved out
    of the collector's sight with ``gc.freeze()``. Young collections run less often than by
    default, and middle ones more often: a middle collection examines everything that survived
    the young ones since the last, and after a burst of new connections (a few hundred objects
    each, all surviving) ten young collections' worth was ~200,000 objects and a 150 ms stall of
    every connection at once; now it is at most ~20,000 objects (~20 ms here).

    Full collections examine every object of every connection: with 5,000 connected, one took
    ~0.4 s here, a stall of every client, and 5,000 handshakes in a row brought two of them
    (~30 % of the server's CPU for those handshakes). They now come after at least a hundred
    middle collections (2,000,000 allocations) instead of ten, and still only when a quarter
    more objects survived than at the last one (CPython's own rule). What they are for, cyclic
    garbage, the server does not make in its steady state (``tests/faults/test_churn.py``), so
    little waits for them meanwhile. Call once, after imports, before serving.
    """
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, GC_MIDDLE_THRESHOLD, GC_OLD_THRESHOLD)


async def serve(
    settings: Settings,
    *,
    shutdown_trigger: Callable[[], Awaitable[object]] | None = None,
    app: BroadcastApp | None = None,
    listener: socket.socket | None = None,
    task_status: trio.TaskStatus[ServerInfo] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until ``shutdown_trigger`` returns or this is cancelled; then shut down gracefully.

    Graceful shutdown: stop accepting, close every client with 1001, give them up to
    ``shutdown_timeout`` seconds, return. Cancelling ``serve`` instead drops connections without
    close frames. ``listener``: a listening socket to serve on (``serve --workers``' workers
    share their parent's) instead of one made here; it is closed on return either way.

    Raises:
        HubFailedError: the broadcaster failed for good (after shutting down).
        OSError: the address cannot be bound, or the certificate or key cannot be loaded
            (``ssl.SSLError``, ``FileNotFoundError``).
        BackplaneUnavailableError: ``redis_url`` is set and Redis did not answer within
            ``replica.BACKPLANE_STARTUP_TIMEOUT`` seconds.
    """
    app = app if app is not None else create_app(settings)
    config = hypercorn_config(settings)
    secure = load_tls(config)  # before binding: a bad certificate is a start-up failure
    await app.hub.wait_for_backplane()  # before listening: no Redis, no server
    sock = listener if listener is not None else open_listener(settings)
    host, port = sock.getsockname()[:2]
    info = ServerInfo(host=host, port=port, secure=secure)
    # Hypercorn's own ``serve`` makes its sockets from ``config.bind``; its worker takes ours
    # (and wraps the secure ones in TLS with ``config.create_ssl_context()``).
    tls = [sock] if secure else []
    sockets = Sockets(
        secure_sockets=tls, insecure_sockets=[] if secure else [sock], quic_sockets=[]
    )
    asgi_app = wrap_app(app, config.wsgi_max_body_size, None)

    async def trigger() -> None:
        async with trio.open_nursery() as nursery:

            async def wait_then_stop(waiter: Callable[[], Awaitable[object]]) -> None:
                await waiter()
                nursery.cancel_scope.cancel()

            nursery.start_soon(wait_then_stop, app.hub.failed_event.wait)
            if shutdown_trigger is not None:
                nursery.start_soon(wait_then_stop, shutdown_trigger)
        log.info("shutting_down", connections=app.hub.connection_count)
        app.hub.close_all()

    with sock:
        async with trio.open_nursery() as nursery:
            await nursery.start(
                partial(worker_serve, asgi_app, config, sockets=sockets, shutdown_trigger=trigger)
            )
            log.info("listening", url=info.url)
            task_status.started(info)
    log.info("stopped")
    if app.hub.failed is not None:
        raise HubFailedError("the broadcaster failed") from app.hub.failed
