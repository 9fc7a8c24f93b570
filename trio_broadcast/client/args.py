"""``trio-broadcast send|listen|chat``: their arguments and exit codes. The commands themselves
(:mod:`.commands`, with the client library) are imported only when one runs."""

from __future__ import annotations

import argparse

EXIT_OK = 0
EXIT_PUBLISH_FAILED = 1
EXIT_USAGE = 2
EXIT_CONNECT = 3
EXIT_REJECTED = 4
EXIT_LOST = 5
EXIT_INTERRUPTED = 130

EXIT_CODES = {  # the one list: each command's --help shows the codes it can return
    EXIT_OK: "done",
    EXIT_PUBLISH_FAILED: "a message was refused or may not have been broadcast",
    EXIT_USAGE: "usage error, or an invalid URL",
    EXIT_CONNECT: "cannot connect (refused, unreachable, timeout, untrusted TLS certificate, "
    "closed before the welcome)",
    EXIT_REJECTED: "the server refused the WebSocket handshake (HTTP 403: Origin not allowed, ...)",
    EXIT_LOST: "the connection was lost and --no-reconnect was given",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C)",
}


def exit_codes_help(*codes: int) -> str:
    """The ``exit codes:`` epilog for a command that can return ``codes``."""
    return "exit codes:\n" + "".join(f"  {code:<4} {EXIT_CODES[code]}\n" for code in codes)


_SEND_CODES = (EXIT_OK, EXIT_PUBLISH_FAILED, EXIT_USAGE, EXIT_CONNECT, EXIT_REJECTED)
_LISTEN_CODES = (EXIT_OK, EXIT_USAGE, EXIT_CONNECT, EXIT_REJECTED, EXIT_LOST)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``send``, ``listen`` and ``chat`` subcommands."""
    send = subparsers.add_parser(
        "send",
        help="publish messages (arguments, or one per line from stdin)",
        description="Publish TEXT as one message, or each line of stdin as a message when no "
        "TEXT is given. Waits for every ack. Paces itself to the server's publish rate.",
        epilog=exit_codes_help(*_SEND_CODES, EXIT_INTERRUPTED),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_common(send)
    send.add_argument("text", nargs="*", metavar="TEXT", help="the message (words are joined)")
    send.add_argument("--id", help="publish id echoed in the ack (single message only)")
    send.add_argument("--json", action="store_true", help="print each ack as a JSON line")
    send.add_argument(
        "--wait",
        type=_seconds,
        default=10.0,
        metavar="SECONDS",
        help="how long a message waits for a connection (default: 10)",
    )
    send.set_defaults(func=_command("run_send"))

    listen = subparsers.add_parser(
        "listen",
        help="print broadcasts as they arrive",
        description="Print every broadcast with its seq, timestamp and sender. Reconnects and "
        "resumes by itself; messages the server could not replay are reported as a gap.",
        epilog=exit_codes_help(*_LISTEN_CODES, EXIT_INTERRUPTED),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_common(listen)
    listen.add_argument("--json", action="store_true", help="one JSON object per line")
    listen.add_argument(
        "--since", type=_non_negative, metavar="SEQ", help="first replay what came after SEQ"
    )
    listen.add_argument(
        "--epoch", help="the epoch SEQ belongs to (default: the server's current one)"
    )
    listen.add_argument("--count", type=_non_negative, metavar="N", help="exit after N messages")
    listen.add_argument(
        "--no-reconnect", action="store_true", help="exit (code 5) when the connection drops"
    )
    listen.add_argument("--quiet", "-q", action="store_true", help="no connection status on stderr")
    listen.set_defaults(func=_command("run_listen"))

    chat = subparsers.add_parser(
        "chat",
        help="interactive: type lines to publish, see everyone else's",
        description="Each line you type is published; broadcasts from others are printed. "
        "End with Ctrl-D.",
        epilog=exit_codes_help(*_SEND_CODES, EXIT_INTERRUPTED),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_common(chat)
    chat.add_argument("--name", help="prefix your messages with 'NAME: '")
    chat.set_defaults(func=_command("run_chat"))


def _command(name: str) -> object:
    def run(args: argparse.Namespace) -> int:
        from . import commands

        result: int = getattr(commands, name)(args)
        return result

    run.__name__ = name
    return run


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("url", metavar="URL", help="ws://HOST:PORT/ws/events (or http://HOST:PORT)")
    parser.add_argument(
        "--no-batch", action="store_true", help="one event per frame (no batched frames)"
    )
    parser.add_argument(
        "--origin", help="send this Origin header (as a browser would; normally none)"
    )
    parser.add_argument(
        "--header",
        action="append",
        default=[],
        type=_header,
        metavar="'NAME: VALUE'",
        help="send this header with the handshake, e.g. a token for a proxy (repeatable)",
    )
    parser.add_argument(
        "--cafile",
        type=_ca_file,
        metavar="FILE",
        help="wss://: trust the CA certificates in this PEM file (instead of the system's)",
    )
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="wss://: do not verify the server's certificate (encrypted, but not authenticated)",
    )
    parser.add_argument(
        "--connect-timeout",
        type=_seconds,
        default=10.0,
        metavar="SECONDS",
        help="for the TCP and WebSocket handshakes (default: 10)",
    )


def _ca_file(path: str) -> str:
    import ssl  # only when the option is given

    try:
        ssl.create_default_context(cafile=path)
    except (OSError, ssl.SSLError) as error:
        message = f"cannot load CA certificates from {path}: {error}"
        raise argparse.ArgumentTypeError(message) from None
    return path


_OWN_HEADERS = {"host", "origin", "upgrade", "connection"}  # and sec-websocket-*: the library's


def _header(text: str) -> tuple[str, str]:
    name, colon, value = text.partition(":")
    if not colon or not name.strip():
        raise argparse.ArgumentTypeError(f"not 'NAME: VALUE': {text!r}")
    lowered = name.strip().lower()
    if lowered in _OWN_HEADERS or lowered.startswith("sec-websocket-"):
        hint = " (use --origin)" if lowered == "origin" else ""
        raise argparse.ArgumentTypeError(f"{name.strip()} is set by the handshake itself{hint}")
    return name.strip(), value.strip()


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def _non_negative(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"not a non-negative integer: {text!r}")
    return int(text)
