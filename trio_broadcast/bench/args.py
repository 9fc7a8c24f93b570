"""``trio-broadcast bench``: its arguments. The load generator itself (:mod:`.run`) is
imported only when the command runs."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``bench`` subcommand."""
    parser = subparsers.add_parser(
        "bench",
        help="load generator: fan-out throughput, latency, evictions",
        description="Open S subscribers, P publishers and Q stalled subscribers (that never "
        "read) over several worker processes, publish for a while, and report deliveries per "
        "second, delivered/expected, end-to-end latency, gaps, duplicates, evictions, errors, "
        "connect time, intake and the bench's own CPU use.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("url", nargs="?", metavar="URL", help="server to load (or use --spawn)")
    parser.add_argument("--spawn", action="store_true", help="start a server subprocess")
    parser.add_argument(
        "--reference",
        choices=["node"],
        default=None,
        help="with --spawn: start the reference peer instead (the same protocol on Node's ws, "
        "from frontend/node_modules), to measure both on this machine in one session",
    )
    parser.add_argument("-s", "--subscribers", type=_count, default=100, metavar="S")
    parser.add_argument("-p", "--publishers", type=_count, default=1, metavar="P")
    parser.add_argument(
        "-q", "--stalled", type=_count, default=0, metavar="Q", help="subscribers that never read"
    )
    parser.add_argument(
        "-r",
        "--rate",
        type=float,
        default=None,
        metavar="MSGS",
        help="offered messages per second, all publishers together (default: as fast as the "
        "server accepts, with --window unacknowledged messages per publisher)",
    )
    parser.add_argument(
        "--window", type=_count, default=64, help="in-flight messages per publisher (max mode)"
    )
    parser.add_argument(
        "-d", "--duration", type=float, default=10.0, metavar="SECONDS", help="publishing time"
    )
    parser.add_argument(
        "--size", type=_count, default=100, metavar="CHARS", help="message text length"
    )
    parser.add_argument("-w", "--workers", type=_count, default=None, help="worker processes")
    parser.add_argument(
        "--driver",
        choices=["python", "c"],
        default="python",
        help="what the workers are: Python processes, or the C load generator (bench/loadgen.c, "
        "compiled with cc -O2 on first use; ws:// only, Linux)",
    )
    parser.add_argument(
        "--no-batch", action="store_true", help="one message per frame (the plain figure)"
    )
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="how long subscribers may take to catch up after publishing stops",
    )
    parser.add_argument(
        "--connect-timeout", type=float, default=30.0, metavar="SECONDS", help="per connection"
    )
    parser.add_argument(
        "--max-connections",
        type=int,
        default=None,
        help="passed to the spawned server (default: enough for this run)",
    )
    parser.add_argument(
        "--server-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument for the spawned server, repeatable: --server-arg=--write-delay=0.002",
    )
    parser.add_argument(
        "--server-pid", type=int, default=None, help="measure this server process's CPU/memory"
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    parser.set_defaults(func=_run)


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"not a non-negative integer: {text!r}")
    return int(text)


def _run(args: argparse.Namespace) -> int:
    from .run import run_bench

    return run_bench(args)
