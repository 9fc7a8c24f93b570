"""Build hook: every wheel and sdist carries the browser UI in ``trio_broadcast/static/``.

pyproject.toml holds the metadata; this file only extends two setuptools commands.

- ``build_py`` (run for every wheel): in a checkout (``frontend/`` present) it builds the UI with
  ``npm ci`` (only when ``frontend/node_modules`` is missing) and ``npm run build``, so the wheel
  never carries a stale or missing UI. Without ``frontend/`` (building from an sdist, or the
  Docker image, which copies a built ``static/``) it uses the ``static/`` it finds. Either way it
  fails, naming the cause, when ``static/index.html`` is still missing: a wheel without the UI
  would serve a page telling a pip user to run ``make run``.
- ``sdist``: builds the UI first, so the sdist carries ``static/`` and a wheel built from it
  needs no Node.

Editable installs (``pip install -e .``, as ``make venv`` does) skip the UI build: ``make ui``
builds it in place. ``TRIO_BROADCAST_SKIP_UI_BUILD=1`` skips running npm (the built ``static/``
must then be there already).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

ROOT = Path(__file__).resolve().parent
FRONTEND = ROOT / "frontend"
INDEX = ROOT / "trio_broadcast" / "static" / "index.html"


class UIBuildError(RuntimeError):
    """The UI could not be built or found; the message says why and what to do."""


def build_ui() -> None:
    """Build the UI into ``trio_broadcast/static/`` when the frontend sources are here."""
    if (FRONTEND / "package.json").is_file() and not os.environ.get("TRIO_BROADCAST_SKIP_UI_BUILD"):
        npm = shutil.which("npm")
        if npm is None:
            raise UIBuildError(
                "building trio-broadcast needs npm (Node 20+) to build the browser UI into "
                "trio_broadcast/static/; install Node, or build the UI elsewhere and set "
                "TRIO_BROADCAST_SKIP_UI_BUILD=1"
            )
        if not (FRONTEND / "node_modules").is_dir():
            _run([npm, "ci", "--no-audit", "--no-fund"])
        _run([npm, "run", "build"])
    if not INDEX.is_file():
        raise UIBuildError(
            f"{INDEX.relative_to(ROOT)} is missing: the package would have no UI. Build from a "
            "checkout with frontend/ (and npm), or run `cd frontend && npm ci && npm run build` "
            "first"
        )


def _run(command: list[str]) -> None:
    print(f"trio-broadcast UI: {' '.join(command[1:])} (in frontend/)", flush=True)
    result = subprocess.run(command, cwd=FRONTEND, check=False)
    if result.returncode != 0:
        raise UIBuildError(f"`npm {' '.join(command[1:])}` failed with {result.returncode}")


class BuildPyWithUI(build_py):
    """``build_py`` that builds the UI first, except for editable installs."""

    def run(self) -> None:
        if not getattr(self, "editable_mode", False):
            build_ui()
        super().run()


class SdistWithUI(sdist):
    """``sdist`` that builds the UI first, so the archive carries ``static/``."""

    def run(self) -> None:
        build_ui()
        super().run()


cmdclass: dict[str, Any] = {"build_py": BuildPyWithUI, "sdist": SdistWithUI}
setup(cmdclass=cmdclass)
