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
from .errors import BackplaneUnavailableError, ConfigError
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
    """``trio-broadcast serve``: 0 after a shutdown, 1 when it cannot start, 2 for a bad setting.

    A failure to start (the port is taken, the address is not this host's, a file it needs
    cannot be read) is one line on stderr, not a traceback: trio reports it wrapped in an
    exception group, which is unwrapped here.
    """
    try:
        settings = Settings.from_args(args)
    except ConfigError as error:
        print(f"trio-broadcast: invalid setting: {error}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, json=settings.log_json)
    if settings.workers > 1:
        from .server.workers import run_workers

        try:
            return run_workers(settings, _serve_argv(args))
        except OSError as error:
            print(
                f"trio-broadcast: cannot start on {settings.host}:{settings.port}: {error}",
                file=sys.stderr,
            )
            return 1
    from .server.serve import ServerInfo, serve, tune_gc  # Quart and Hypercorn: only the server
    from .server.workers import inherited_listener

    listener = inherited_listener()  # a worker of ``serve --workers N``: its parent's socket
    tune_gc()
    started = False

    async def main() -> None:
        nonlocal started
        async with trio.open_nursery() as nursery:
            info: ServerInfo = await nursery.start(
                partial(serve, settings, shutdown_trigger=_wait_for_signal, listener=listener)
            )
            started = True
            print(f"trio-broadcast listening on {info.url}", flush=True)

    try:
        trio.run(main)
    except (OSError, BackplaneUnavailableError, BaseExceptionGroup) as error:
        cause = None if started else startup_error(error)
        if cause is None:
            raise
        print(
            f"trio-broadcast: cannot start on {settings.host}:{settings.port}: {cause}",
            file=sys.stderr,
        )
        return 1
    return 0


def startup_error(error: BaseException) -> Exception | None:
    """The ``OSError`` (or ``BackplaneUnavailableError``) that stopped the server starting,
    unwrapped from trio's exception groups.

    None when ``error`` is (or holds) anything else: that is a bug, for a traceback.
    """
    if isinstance(error, OSError | BackplaneUnavailableError):
        return error
    if isinstance(error, BaseExceptionGroup):
        causes = [startup_error(inner) for inner in error.exceptions]
        if causes and all(cause is not None for cause in causes):
            return causes[0]
    return None


def _serve_argv(args: argparse.Namespace) -> list[str]:
    """The command line after ``serve``: what a worker of ``serve --workers N`` runs."""
    argv: list[str] = args.argv
    return argv[argv.index("serve") + 1 :]


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    sys.exit(args.func(args))
