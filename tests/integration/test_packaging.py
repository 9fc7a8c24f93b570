"""What a release carries: the wheel built from a clean clone has the UI; the image's health check
asks the port the server was given."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import zipfile
from email.parser import HeaderParser
from pathlib import Path

import pytest
import trio
from certs import make_certificates
from conftest import RunningServer, run_server

ROOT = Path(__file__).resolve().parents[2]


async def _run(
    command: list[str], env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    return await trio.run_process(
        command,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )


async def _clean_clone(tmp_path: Path) -> Path:
    """A ``git clone`` of this repository's HEAD: no node_modules, no built UI."""
    clone = tmp_path / "clone"
    result = await _run(["git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(clone)])
    assert result.returncode == 0, result.stderr.decode()
    assert not (clone / "trio_broadcast" / "static").exists()
    return clone


async def _build_wheel(source: Path, dist: Path) -> subprocess.CompletedProcess[bytes]:
    return await _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(dist), str(source)]
    )


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("npm") is None, reason="building the UI needs npm")
async def test_wheel_built_from_a_clean_clone_carries_the_ui(tmp_path: Path) -> None:
    clone = await _clean_clone(tmp_path)
    result = await _build_wheel(clone, tmp_path / "dist")
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    (wheel,) = (tmp_path / "dist").glob("trio_broadcast-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        index = archive.read("trio_broadcast/static/index.html").decode()
        metadata = HeaderParser().parsestr(
            archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        )
    for asset in re.findall(r'(?:src|href)="/?(assets/[^"]+)"', index):
        assert f"trio_broadcast/static/{asset}" in names
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)
    assert "trio_broadcast/wire/asyncapi.json" in names
    assert "trio_broadcast/bench/loadgen.c" in names  # bench --driver c compiles it
    assert metadata["License-Expression"] == "MIT"
    assert "Framework :: Trio" in metadata.get_all("Classifier", [])
    assert metadata.get_all("Project-URL")


@pytest.mark.slow
async def test_wheel_without_frontend_or_built_ui_fails_and_says_why(tmp_path: Path) -> None:
    clone = await _clean_clone(tmp_path)
    shutil.rmtree(clone / "frontend")
    result = await _build_wheel(clone, tmp_path / "dist")
    assert result.returncode != 0
    assert "the package would have no UI" in (result.stdout + result.stderr).decode()
    assert not list((tmp_path / "dist").glob("*.whl"))


def _healthcheck_command() -> list[str]:
    """The Dockerfile's HEALTHCHECK command (exec form), continuation lines joined."""
    dockerfile = (ROOT / "Dockerfile").read_text().replace("\\\n", "")
    match = re.search(r"^HEALTHCHECK .*?CMD (\[.*\])$", dockerfile, re.MULTILINE)
    assert match, "no exec-form HEALTHCHECK in the Dockerfile"
    command: list[str] = json.loads(match.group(1))
    assert command[0] == "python"
    return [sys.executable, *command[1:]]


async def test_docker_healthcheck_asks_the_port_the_server_was_given(
    server: RunningServer,
) -> None:
    command = _healthcheck_command()
    env = {"TRIO_BROADCAST_HOST": "0.0.0.0", "TRIO_BROADCAST_PORT": str(server.info.port)}
    healthy = await _run(command, env=env)
    assert healthy.returncode == 0, healthy.stderr.decode()
    server.shutdown()  # /health answers 503 while shutting down, then nothing listens
    await server.stopped.wait()
    gone = await _run(command, env=env)
    assert gone.returncode != 0


async def test_docker_healthcheck_asks_over_tls_when_the_server_has_a_certificate(
    tmp_path: Path,
) -> None:
    certificates = make_certificates(tmp_path)
    async with run_server(certfile=str(certificates.cert), keyfile=str(certificates.key)) as server:
        env = {
            "TRIO_BROADCAST_HOST": "127.0.0.1",
            "TRIO_BROADCAST_PORT": str(server.info.port),
            "TRIO_BROADCAST_CERTFILE": str(certificates.cert),
        }
        result = await _run(_healthcheck_command(), env=env)
        assert result.returncode == 0, result.stderr.decode()
