"""TLS: ``serve`` with a certificate answers ``wss://`` (and ``https://``), clients trust it
through an ``ssl_context``, and a certificate they cannot verify is reported as such."""

from __future__ import annotations

import ssl
import subprocess
import sys
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from functools import partial
from pathlib import Path

import pytest
import trio
from certs import Certificates, make_certificates
from conftest import RunningServer
from support import connect, publish, receive_type, server_process

from trio_broadcast import Settings, serve
from trio_broadcast.client.session import (
    CertificateError,
    Message,
    OriginRejectedError,
    TLSError,
    open_client,
)

NEVER = 3600.0  # seconds: a connect timeout the test deadline comes long before


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
    ca_key = certificates.ca.with_name("ca.key")  # a key, but not the certificate's
    with pytest.raises(FileNotFoundError):
        await serve(Settings(port=0, certfile=str(tmp_path / "missing.pem")))
    with pytest.raises(ssl.SSLError, match="not a PEM certificate and key"):  # no key
        await serve(Settings(port=0, certfile=str(certificates.cert)))
    with pytest.raises(ssl.SSLError, match="KEY_VALUES_MISMATCH"):
        await serve(Settings(port=0, certfile=str(certificates.cert), keyfile=str(ca_key)))


async def test_client_library_over_wss(
    server_factory: Callable[..., AbstractAsyncContextManager[RunningServer]],
    certificates: Certificates,
) -> None:
    context = certificates.client_context()
    async with (
        server_factory(certfile=str(certificates.combined)) as server,
        open_client(server.ws_url, ssl_context=context) as listener,
        open_client(server.ws_url, ssl_context=context, receive=False) as sender,
    ):
        ack = await sender.publish("hello over wss")
        event = await anext(aiter(listener))
        while not isinstance(event, Message):
            event = await anext(aiter(listener))
        assert (event.text, event.seq) == ("hello over wss", ack.seq)


async def test_an_untrusted_certificate_is_reported_as_such_at_once(
    server_factory: Callable[..., AbstractAsyncContextManager[RunningServer]],
    certificates: Certificates,
) -> None:
    """Before, the client waited for its connect timeout and then said "no handshake"; the
    connect timeout here is far beyond the test's deadline."""
    async with server_factory(certfile=str(certificates.combined)) as server:
        with pytest.raises(
            CertificateError, match=r"cannot verify the TLS certificate of wss://127\.0\.0\.1"
        ):
            async with open_client(server.ws_url, connect_timeout=NEVER):
                pass
        assert server.app.hub.open_sessions == 0
    # A certificate from a trusted CA, for another name: the server at 127.0.0.2 presents
    # the one made for 127.0.0.1 and localhost.
    async with server_factory(host="127.0.0.2", certfile=str(certificates.combined)) as other:
        with pytest.raises(CertificateError, match=r"127\.0\.0\.2"):
            async with open_client(
                other.ws_url, ssl_context=certificates.client_context(), connect_timeout=NEVER
            ):
                pass


async def test_wss_to_a_plain_server_is_a_tls_error(server: RunningServer) -> None:
    url = server.ws_url.replace("ws://", "wss://")
    with pytest.raises(TLSError, match="does not speak TLS") as raised:
        async with open_client(url, connect_timeout=NEVER):
            pass
    assert not isinstance(raised.value, CertificateError)


async def test_extra_headers_go_with_the_handshake() -> None:
    """A bare listener records the request the client sends, and refuses it."""
    received: list[bytes] = []
    request_read = trio.Event()

    async def answer(stream: trio.SocketStream) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            head += await stream.receive_some(4096)
        received.append(head)
        request_read.set()
        await stream.send_all(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n")
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        (listener,) = await nursery.start(partial(trio.serve_tcp, answer, 0, host="127.0.0.1"))
        port = listener.socket.getsockname()[1]
        headers = [("Authorization", "Bearer t0ken"), ("X-Tenant", "blue")]
        with pytest.raises(OriginRejectedError):
            async with open_client(f"ws://127.0.0.1:{port}/ws/events", headers=headers):
                pass
        await request_read.wait()
        nursery.cancel_scope.cancel()
    lines = received[0].decode().lower().split("\r\n")
    assert "authorization: bearer t0ken" in lines
    assert "x-tenant: blue" in lines


@pytest.mark.parametrize(
    "header", [("Host", "evil.example"), ("sec-websocket-key", "x"), ("X-A", "b\r\nX-B: c")]
)
async def test_handshake_headers_cannot_be_overridden(header: tuple[str, str]) -> None:
    with pytest.raises(ValueError, match="header"):
        async with open_client("ws://127.0.0.1:9/ws/events", headers=[header]):
            pass


async def cli(*args: str) -> subprocess.CompletedProcess[bytes]:
    return await trio.run_process(
        [sys.executable, "-m", "trio_broadcast", *args],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )


@pytest.mark.slow
async def test_cli_trusts_a_cafile_or_skips_the_check_when_told(
    server_factory: Callable[..., AbstractAsyncContextManager[RunningServer]],
    certificates: Certificates,
) -> None:
    async with server_factory(certfile=str(certificates.combined)) as server:
        refused = await cli("send", server.ws_url, "hello", "--connect-timeout", str(NEVER))
        assert refused.returncode == 3
        assert b"cannot verify the TLS certificate" in refused.stderr
        assert b"--cafile" in refused.stderr
        trusted = await cli("send", server.ws_url, "one", "--cafile", str(certificates.ca))
        assert trusted.returncode == 0, trusted.stderr
        insecure = await cli("send", server.ws_url, "two", "--insecure", "--json")
        assert insecure.returncode == 0, insecure.stderr
        assert b'"seq":2' in insecure.stdout
        bad_ca = await cli("send", server.ws_url, "x", "--cafile", str(certificates.key))
        assert bad_ca.returncode == 2
        assert b"cannot load CA certificates" in bad_ca.stderr


@pytest.mark.slow
async def test_serve_command_listens_with_tls(certificates: Certificates) -> None:
    async with server_process(
        "--certfile", str(certificates.cert), "--keyfile", str(certificates.key)
    ) as server:
        assert server.url.startswith("https://127.0.0.1:")  # what it printed
        sent = await cli("send", server.url, "hello", "--cafile", str(certificates.ca), "--json")
        assert sent.returncode == 0, sent.stderr
        assert b'"seq":1' in sent.stdout
