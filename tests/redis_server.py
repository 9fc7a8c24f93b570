"""A real ``redis-server`` for the backplane tests: a free port, a temporary folder, no
persistence unless asked for; started, killed and started again on demand."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio

READY = b"Ready to accept connections"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """One redis-server on 127.0.0.1:``port`` with its files in ``folder``."""

    def __init__(self, folder: Path, *, persistent: bool = False, cluster: bool = False) -> None:
        self.folder = folder  # its working directory (the AOF, when persistent)
        self.port = free_port()
        self.persistent = persistent  # appendonly, fsync before every reply
        self.cluster = cluster  # a node of a Redis Cluster (its nodes.conf in ``folder``)
        self.bus_port: int | None = None  # the cluster bus's port, once started
        self.process: trio.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    @property
    def socket_path(self) -> Path:
        return self.folder / "redis.sock"

    @property
    def unix_url(self) -> str:
        return f"unix://{self.socket_path}"

    async def start(self) -> None:
        """Start it and wait until it says it accepts connections."""
        executable = shutil.which("redis-server") or "/usr/bin/redis-server"
        persistence = ["--appendonly", "yes", "--appendfsync", "always"]
        command = [
            executable,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.folder),
            "--unixsocket",
            str(self.socket_path),
            "--unixsocketperm",
            "700",
            "--save",
            "",
            *(persistence if self.persistent else ["--appendonly", "no"]),
            *(self._cluster_options() if self.cluster else []),
        ]
        process = await trio.lowlevel.open_process(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        self.process = process
        assert process.stdout is not None
        seen = b""
        while READY not in seen:
            chunk = await process.stdout.receive_some(4096)
            assert chunk, f"redis-server exited: {seen.decode(errors='replace')}"
            seen = seen[-len(READY) :] + chunk if len(seen) > 4096 else seen + chunk

    def _cluster_options(self) -> list[str]:
        # The cluster bus on a port of its own (by default the port + 10000, which a free
        # port above 55535 cannot have).
        if self.bus_port is None:
            self.bus_port = free_port()
        bus = ["--cluster-port", str(self.bus_port)]
        return ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", *bus]

    def pause(self) -> None:
        """SIGSTOP: connections stay open and nothing is answered (like a network partition)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT: it answers what it was sent meanwhile."""
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    async def kill(self) -> None:
        """SIGKILL, and wait until it is gone."""
        process = self.process
        assert process is not None
        process.send_signal(signal.SIGKILL)  # a stopped process dies of it too
        await process.wait()
        assert process.stdout is not None
        await process.stdout.aclose()
        self.process = None


@asynccontextmanager
async def open_redis_server(
    folder: Path, *, persistent: bool = False
) -> AsyncIterator[RedisServer]:
    """A started redis-server; killed on exit."""
    server = RedisServer(folder, persistent=persistent)
    await server.start()
    try:
        yield server
    finally:
        if server.process is not None:
            with trio.CancelScope(shield=True):
                await server.kill()


class RedisCluster:
    """A Redis Cluster of ``size`` masters (no replicas) on free ports, its files in
    ``folder``; ``url`` names the first node (the client finds the others)."""

    def __init__(self, folder: Path, size: int = 3) -> None:
        self.nodes = [RedisServer(folder / f"node{index}", cluster=True) for index in range(size)]

    @property
    def url(self) -> str:
        return self.nodes[0].url

    async def start(self) -> None:
        """Start every node, give them the slots, wait until the cluster says it is ok."""
        for node in self.nodes:
            node.folder.mkdir(parents=True, exist_ok=True)
            await node.start()
        cli = shutil.which("redis-cli") or "/usr/bin/redis-cli"
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        await trio.run_process(
            [cli, "--cluster", "create", *addresses, "--cluster-yes"],
            stdin=subprocess.DEVNULL,
            capture_stdout=True,
            capture_stderr=True,
        )
        for node in self.nodes:  # every node knows every slot's owner
            while True:
                result = await trio.run_process(
                    [cli, "-p", str(node.port), "cluster", "info"], capture_stdout=True
                )
                if b"cluster_state:ok" in result.stdout:
                    break
                await trio.sleep(0.05)

    async def owner(self, key: str) -> int:
        """Which node (an index into ``nodes``) holds ``key``'s slot."""
        cli = [shutil.which("redis-cli") or "/usr/bin/redis-cli", "-p", str(self.nodes[0].port)]
        keyslot = await trio.run_process([*cli, "cluster", "keyslot", key], capture_stdout=True)
        slot = int(keyslot.stdout)
        listing = await trio.run_process([*cli, "cluster", "nodes"], capture_stdout=True)
        for line in listing.stdout.decode().splitlines():
            address, *ranges = line.split()[1:2] + line.split()[8:]
            for span in ranges:
                first, _, last = span.partition("-")
                if int(first) <= slot <= int(last or first):
                    port = int(address.split("@")[0].rpartition(":")[2])
                    return [node.port for node in self.nodes].index(port)
        raise LookupError(f"no node holds slot {slot}")


@asynccontextmanager
async def open_redis_cluster(folder: Path, size: int = 3) -> AsyncIterator[RedisCluster]:
    """A started Redis Cluster; every node killed on exit."""
    cluster = RedisCluster(folder, size)
    try:
        await cluster.start()
        yield cluster
    finally:
        with trio.CancelScope(shield=True):
            for node in cluster.nodes:
                if node.process is not None:
                    await node.kill()
