"""The package's layering: each command loads only its own side."""

from __future__ import annotations

import subprocess
import sys

import pytest


def loaded_after(code: str) -> set[str]:
    """Module names loaded by a fresh interpreter after running ``code``."""
    script = f"{code}\nimport sys\nprint('\\n'.join(sys.modules))"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    return set(done.stdout.split())


def test_serve_loads_neither_the_client_nor_the_bench() -> None:
    loaded = loaded_after(
        "from trio_broadcast.cli import build_parser\n"
        "build_parser()\n"
        "from trio_broadcast.server.serve import serve"
    )
    assert "trio_broadcast.server.hub" in loaded
    assert not {
        name
        for name in loaded
        if name.startswith(("trio_broadcast.client.", "trio_broadcast.bench.", "trio_websocket"))
        and not name.endswith(".args")
    }


@pytest.mark.parametrize("command", ["send", "listen", "chat"])
def test_client_commands_load_neither_the_server_nor_the_bench(command: str) -> None:
    loaded = loaded_after(
        "from trio_broadcast.cli import build_parser\n"
        f"args = build_parser().parse_args(['{command}', 'ws://h/'])\n"
        "import trio_broadcast.client.commands"
    )
    assert "trio_websocket" in loaded
    assert not {
        name
        for name in loaded
        if name.startswith(
            ("quart", "hypercorn", "trio_broadcast.server.", "trio_broadcast.bench.")
        )
        and name not in {"trio_broadcast.server.config"}  # the CLI's `serve` flags
        and not name.endswith(".args")
    }


def test_the_app_without_redis_url_loads_no_redis_client() -> None:
    loaded = loaded_after(
        "from trio_broadcast.server.app import create_app\n"
        "from trio_broadcast.server.config import Settings\n"
        "create_app(Settings())"
    )
    assert "trio_broadcast.server.hub" in loaded
    assert not {name for name in loaded if name.split(".")[0] == "coredis"}
    assert "trio_broadcast.server.redis_backplane" not in loaded
