"""The ``trio-broadcast`` command: ``serve`` here; ``send``/``listen``/``chat`` and ``bench`` come
from their own modules."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from functools import partial

import trio

from . import __version__
from .bench import args as bench_args
from .client import args as client_args
from .errors import ConfigError
from .logs import configure_logging
from .server.config import Settings, add_arguments


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trio-broadcast", description="Real-time WebSocket broadcast server and tools."
    )
    parser.add_argument("--version", action="version", version=f"trio-broadcast {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve_parser = sub.add_parser(
        "serve",
        help="run the server (UI at /, WebSocket at /ws/events)",
        description="Run the broadcast server. Every flag can also be set with its environment "
        "variable; flags win.",
    )
    add_arguments(serve_parser)
    serve_parser.set_defaults(func=run_serve)
    _register_tools(sub)
    return parser


def _register_tools(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    client_args.register(sub)
    bench_args.register(sub)


async def _wait_for_signal() -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            return


def run_serve(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_args(args)
    except ConfigError as error:
        print(f"trio-broadcast: invalid setting: {error}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, json=settings.log_json)
    from .server.serve import ServerInfo, serve, tune_gc  # Quart and Hypercorn: only the server

    tune_gc()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            info: ServerInfo = await nursery.start(
                partial(serve, settings, shutdown_trigger=_wait_for_signal)
            )
            print(f"trio-broadcast listening on {info.url}", flush=True)

    try:
        trio.run(main)
    except OSError as error:
        print(
            f"trio-broadcast: cannot listen on {settings.host}:{settings.port}: {error}",
            file=sys.stderr,
        )
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    sys.exit(args.func(args))
