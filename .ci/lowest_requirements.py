"""Print the project's runtime dependencies pinned to their lower bounds, one per line.

``pip install -r <(python .ci/lowest_requirements.py)`` then installs the oldest versions
pyproject.toml claims to work with (``make test-lowest`` runs the integration tests on them).
A dependency without a ``>=`` bound is an error: every one must state what it needs.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

LOWER = re.compile(r">=\s*([^,;\s]+)")


def main() -> int:
    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    dependencies = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    for requirement in dependencies:
        name = re.split(r"[<>=!~;\[\s]", requirement, maxsplit=1)[0]
        bound = LOWER.search(requirement)
        if bound is None:
            print(f"{requirement!r} has no lower bound (>=)", file=sys.stderr)
            return 1
        print(f"{name}=={bound.group(1)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
