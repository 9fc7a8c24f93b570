"""The Quart-Trio app: HTTP routes (UI, health, status, metrics), with the WebSocket endpoint
(:mod:`.endpoint`) in front of it."""

from __future__ import annotations

import time
from importlib import resources
from pathlib import Path
from typing import Any

import structlog
from quart import Response, abort, request, send_from_directory
from quart_trio import QuartTrio

from .. import __version__
from . import _hypercorn, endpoint
from .config import Settings
from .hub import Hub
from .metrics import Metrics
from .proxies import TrustedProxies
from .replica import BackplaneState

log = structlog.get_logger("trio_broadcast.server.app")

PACKAGED_STATIC = Path(str(resources.files("trio_broadcast") / "static"))
FALLBACK_PAGE = Path(str(resources.files("trio_broadcast") / "fallback" / "index.html"))
ASYNCAPI = Path(str(resources.files("trio_broadcast") / "wire" / "asyncapi.json"))  # the protocol
MIN_STREAM_LENGTH = 10_000  # entries the backplane's stream keeps at least (replica.MAX_AHEAD)
MIN_STREAM_AGE = 60.0  # seconds the stream keeps entries at least, whatever history_ttl
IMMUTABLE = "public, max-age=31536000, immutable"  # hashed Vite assets never change


class BroadcastApp(QuartTrio):
    """QuartTrio with the broadcast state attached, and ``/ws/events`` served in front of it."""

    settings: Settings
    hub: Hub
    metrics: Metrics
    trusted_proxies: TrustedProxies
    started_at: float

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "websocket" and scope["path"] == endpoint.PATH:
            await endpoint.serve_events(
                self.hub,
                scope,
                receive,
                send,
                allowed_origins=self.settings.allowed_origins,
                public_hosts=self.settings.public_hosts,
                trusted_proxies=self.trusted_proxies,
                observe_latency=self.metrics.latency.observe,
            )
        else:
            await super().__call__(scope, receive, send)


def create_app(settings: Settings | None = None) -> BroadcastApp:
    """Build the app. Its hub's broadcaster runs in the app-lifetime nursery while serving."""
    settings = settings if settings is not None else Settings.from_env()
    _hypercorn.install()
    app = BroadcastApp(__name__, static_folder=None)
    app.settings = settings
    backplane = None
    if settings.redis_url is not None:
        from .redis_backplane import RedisBackplane  # coredis: loaded only when it is used

        # The stream is also how servers hand entries to each other: never trimmed so short
        # that a reader a little behind would find its next entry gone.
        length = max(settings.history_size, MIN_STREAM_LENGTH)
        ttl = settings.history_ttl
        age = None if ttl is None else max(ttl, MIN_STREAM_AGE)
        backplane = RedisBackplane(
            settings.redis_url,
            settings.redis_prefix,
            max_length=length,
            max_age=age,
            cluster=settings.redis_cluster,
        )
    app.hub = Hub(settings, server_name=f"trio-broadcast/{__version__}", backplane=backplane)
    app.metrics = Metrics(app.hub)
    app.hub.observe_latency = app.metrics.latency.observe
    app.trusted_proxies = TrustedProxies(settings.trusted_proxies)
    app.started_at = time.time()
    static_dir = Path(settings.static_dir) if settings.static_dir else PACKAGED_STATIC

    @app.before_serving
    async def start_hub() -> None:
        await app.nursery.start(app.hub.serve)

    @app.after_serving
    async def stop_hub() -> None:
        app.hub.close_all()

    @app.get("/health")
    async def health() -> tuple[dict[str, Any], int]:
        hub = app.hub
        status = "healthy"
        if hub.failed is not None:
            status = "unhealthy"
        elif hub.closing:
            status = "shutting_down"
        elif hub.backplane_state is BackplaneState.DOWN:
            status = "backplane_unavailable"
        body: dict[str, Any] = {
            "status": status,
            "connections": hub.connection_count,
            "epoch": hub.epoch,
        }
        if hub.backplane_state is not BackplaneState.NONE:
            body["backplane"] = hub.backplane_state.value
            body["cluster_connections"] = hub.cluster_connections
        return body, 200 if status == "healthy" else 503

    @app.get("/api/status")
    async def status() -> dict[str, Any]:
        stats = app.hub.statistics()
        return {
            "version": __version__,
            "uptime": round(time.time() - app.started_at, 3),
            "epoch": stats.epoch,
            "seq": stats.seq,
            "connections": stats.connections,
            "connections_total": stats.connections_total,
            "open_sessions": stats.open_sessions,
            "messages_in": stats.messages_in,
            "messages_out": stats.messages_out,
            "frames_out": stats.frames_out,
            "deliveries": stats.deliveries,
            "evictions": stats.evictions,
            "errors": stats.errors,
            "outbox_depth": {"total": stats.outbox_depth_total, "max": stats.outbox_depth_max},
            "history_length": stats.history_length,
            "broadcaster_restarts": stats.restarts,
            "backplane": stats.backplane,
            "cluster_connections": stats.cluster_connections,
            # With a backplane: this process's name in the log (its entries' ``n`` field).
            "node": None if app.hub.replica is None else app.hub.replica.node_id,
            "limits": settings.limits(),
        }

    @app.get("/asyncapi.json")
    async def asyncapi() -> Response:
        response = await send_from_directory(ASYNCAPI.parent, ASYNCAPI.name)
        response.headers["Cache-Control"] = "no-cache"
        return response

    @app.get("/metrics")
    async def metrics() -> Response:
        body, content_type = app.metrics.render(request.headers.get("Accept", ""))
        return Response(body, content_type=content_type)

    @app.get("/")
    async def index() -> Response:
        page = static_dir / "index.html"
        if not page.is_file():
            page = FALLBACK_PAGE
        response = await send_from_directory(page.parent, page.name)
        response.headers["Cache-Control"] = "no-cache"
        return response

    @app.get("/<path:path>")
    async def static_file(path: str) -> Response:
        if not static_dir.is_dir():
            abort(404)
        response = await send_from_directory(static_dir, path)
        hashed = path.startswith("assets/")
        response.headers["Cache-Control"] = IMMUTABLE if hashed else "no-cache"
        return response

    return app


__all__ = ["BroadcastApp", "create_app"]
