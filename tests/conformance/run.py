"""``make conformance``: the Autobahn|Testsuite fuzzing client against the echo endpoint.

    python tests/conformance/run.py WSTEST [--cases 1.*,6.4.*] [--compression] [--outdir DIR]

Starts the echo app (:mod:`echo`: the server's own stack with ``/echo``) on 127.0.0.1, runs
``WSTEST -m fuzzingclient`` against it (``autobahntestsuite``, a Python 2.7 program: the Makefile
installs it in a virtualenv of its own), and reads its report. Exit status 0 when no case
FAILED and every result other than OK is one docs/deployment.md explains (``EXPLAINED``); 1
otherwise, listing the cases. The HTML report stays in ``--outdir``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections import Counter
from functools import partial
from pathlib import Path

import trio
from echo import ECHO_PATH, serve_echo_app  # beside this script, which Python puts on sys.path

EXCLUDED = [
    "12.*",  # permessage-deflate, off by default: run with --compression
    "13.*",
]
# With --compression and no --cases: the three smallest cases of each permessage-deflate group
# (seconds; every one of the 216 takes about 9 minutes here: --cases 12.*,13.*).
DEFLATE_SMOKE = [
    f"{group}.{case}"
    for group in ("12.1", "12.2", "12.3", "12.4", "12.5", *(f"13.{n}" for n in range(1, 8)))
    for case in (1, 2, 3)
]
# Results other than OK that are understood, with why (docs/deployment.md says the same).
EXPLAINED = {
    "7.1.6": "a 256 KiB message, a close and a ping sent back to back: the echo of the message "
    "is written in full before the close is answered, and the ping after the close is ignored, "
    "as RFC 6455 allows; the suite's expected events assume otherwise (informational)",
    "7.13.1": "close code 5000: outside RFC 6455's ranges, answered with 1002 (informational: "
    "the RFC leaves the reaction open)",
    "7.13.2": "close code 65535: as 7.13.1",
}
RUN_TIMEOUT = 900  # seconds for the whole fuzzing run


async def run(
    wstest: str, cases: list[str], excluded: list[str], outdir: Path, *, compression: bool
) -> dict[str, dict[str, object]]:
    """Serve the echo app, run the fuzzing client against it; its per-case results."""
    async with trio.open_nursery() as nursery:
        info = await nursery.start(partial(serve_echo_app, compression=compression))
        spec = {
            "outdir": str(outdir),
            "servers": [
                {"agent": "trio-broadcast", "url": f"ws://127.0.0.1:{info.port}{ECHO_PATH}"}
            ],
            "cases": cases,
            "exclude-cases": excluded,
            "exclude-agent-cases": {},
        }
        spec_path = outdir / "fuzzingclient.json"
        spec_path.write_text(json.dumps(spec, indent=2))
        with trio.fail_after(RUN_TIMEOUT):
            result = await trio.run_process(
                [wstest, "-m", "fuzzingclient", "-s", str(spec_path)],
                cwd=str(outdir),
                stdin=subprocess.DEVNULL,
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
        nursery.cancel_scope.cancel()
    if result.returncode != 0:
        sys.stderr.write(result.stdout.decode(errors="replace")[-4000:])
        sys.stderr.write(result.stderr.decode(errors="replace")[-4000:])
        raise SystemExit(f"wstest exited with {result.returncode}")
    index = json.loads((outdir / "index.json").read_text())
    results: dict[str, dict[str, object]] = index["trio-broadcast"]
    return results


def _case_key(case: str) -> list[int]:
    return [int(part) for part in case.split(".")]


def judge(results: dict[str, dict[str, object]]) -> tuple[Counter[str], list[str]]:
    """Counts by behaviour, and a line per case that is neither OK nor explained."""
    counts: Counter[str] = Counter()
    problems: list[str] = []
    for case in sorted(results, key=_case_key):
        result = results[case]
        behaviours = {str(result["behavior"]), str(result["behaviorClose"])}
        worst = next(
            (
                b
                for b in ("FAILED", "UNIMPLEMENTED", "NON-STRICT", "INFORMATIONAL")
                if b in behaviours
            ),
            "OK",
        )
        counts[worst] += 1
        if worst == "FAILED" or (worst != "OK" and case not in EXPLAINED):
            problems.append(
                f"{case}: {result['behavior']} (close: {result['behaviorClose']}, "
                f"code {result.get('remoteCloseCode')}) - see {result.get('reportfile')}"
            )
    return counts, problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("wstest", help="the wstest program of autobahntestsuite")
    parser.add_argument(
        "--cases",
        help="comma-separated case ids or patterns (default: *, or with --compression the "
        "three smallest cases of each deflate group)",
    )
    parser.add_argument(
        "--exclude",
        help=f"comma-separated case patterns not to run (default: {','.join(EXCLUDED)}, or "
        "none with --compression)",
    )
    parser.add_argument(
        "--compression",
        action="store_true",
        help="turn permessage-deflate on, as serve --compression does (cases 12.* and 13.* "
        "test it)",
    )
    parser.add_argument("--outdir", type=Path, help="where the report goes (default: a temp dir)")
    args = parser.parse_args()
    outdir = args.outdir or Path(tempfile.mkdtemp(prefix="autobahn-"))
    outdir.mkdir(parents=True, exist_ok=True)
    wstest = str(Path(args.wstest).resolve())  # it runs in outdir
    if args.cases is not None:
        cases = args.cases.split(",")
    else:
        cases = DEFLATE_SMOKE if args.compression else ["*"]
    if args.exclude is not None:
        excluded = [pattern for pattern in args.exclude.split(",") if pattern]
    else:
        excluded = [] if args.compression else EXCLUDED
    results = trio.run(
        partial(run, compression=args.compression), wstest, cases, excluded, outdir.resolve()
    )
    counts, problems = judge(results)
    summary = ", ".join(
        f"{counts[b]} {b}"
        for b in ("OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED")
        if counts[b]
    )
    print(f"autobahn: {len(results)} cases: {summary}; report: {outdir}/index.html")
    for line in problems:
        print(f"  {line}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
