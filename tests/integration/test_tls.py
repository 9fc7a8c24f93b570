"""TLS: ``serve`` with a certificate answers ``wss://`` (and ``https://``), clients trust it
through an ``ssl_context``, and a certificate they cannot verify is reported as such."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest
import trio
from certs import Certificates, make_certificates
from conftest import RunningServer
from support import connect, publish, receive_type

from trio_broadcast import Settings, serve


@pytest.fixture(scope="session")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certs"))


async def test_wss_broadcast_with_a_trusted_certificate(
    server_factory: Callable[..., AbstractAsyncContextManager[RunningServer]],
    certificates: Certificates,
) -> None:
    context = certificates.client_context()
    async with server_factory(
        certfile=str(certificates.cert), keyfile=str(certificates.key)
    ) as server:
        assert server.url.startswith("https://127.0.0.1:")
        assert server.ws_url.startswith("wss://127.0.0.1:")
        async with (
            connect(server.ws_url, ssl_context=context) as sender,
            connect(server.ws_url, ssl_context=context) as receiver,
        ):
            await receive_type(sender, "welcome")
            await receive_type(receiver, "welcome")
            await publish(sender, "over tls")
            assert (await receive_type(receiver, "message"))["message"] == "over tls"
            assert (await receive_type(sender, "ack"))["seq"] == 1


async def test_a_certfile_holding_the_key_is_enough(
    server_factory: Callable[..., AbstractAsyncContextManager[RunningServer]],
    certificates: Certificates,
) -> None:
    async with (
        server_factory(certfile=str(certificates.combined)) as server,
        connect(server.ws_url, ssl_context=certificates.client_context()) as ws,
    ):
        await receive_type(ws, "welcome")


async def test_http_routes_are_served_over_tls(
    server_factory: Callable[..., AbstractAsyncContextManager[RunningServer]],
    certificates: Certificates,
) -> None:
    context = certificates.client_context()
    context.set_alpn_protocols(["h2", "http/1.1"])  # as browsers offer
    async with server_factory(certfile=str(certificates.combined)) as server:
        stream = await trio.open_ssl_over_tcp_stream(
            server.info.host, server.info.port, ssl_context=context
        )
        async with stream:
            await stream.send_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
            head = b""
            while b"\r\n" not in head:
                head += await stream.receive_some(1024)
        assert head.startswith(b"HTTP/1.1 200")
        assert stream.selected_alpn_protocol() == "http/1.1"


async def test_a_missing_or_wrong_certificate_fails_before_listening(
    tmp_path: Path, certificates: Certificates
) -> None:
    with pytest.raises(FileNotFoundError):
        await serve(Settings(port=0, certfile=str(tmp_path / "missing.pem")))
    with pytest.raises(ssl.SSLError):  # a certificate without its key
        await serve(Settings(port=0, certfile=str(certificates.cert)))
