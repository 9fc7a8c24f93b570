"""The settings for TLS, public host names and trusted proxies: read from variables and flags,
checked at start-up."""

from __future__ import annotations

import argparse

import pytest

from trio_broadcast.cli import build_parser
from trio_broadcast.errors import ConfigError
from trio_broadcast.server.config import Settings, add_arguments
from trio_broadcast.server.serve import ServerInfo, hypercorn_config


def test_variables_are_read() -> None:
    settings = Settings.from_env(
        {
            "TRIO_BROADCAST_CERTFILE": "/etc/ssl/chat.pem",
            "TRIO_BROADCAST_PUBLIC_HOSTS": "chat.example.com, www.chat.example.com",
            "TRIO_BROADCAST_TRUSTED_PROXIES": "127.0.0.1,10.0.0.0/8, ::1",
        }
    )
    assert settings.certfile == "/etc/ssl/chat.pem"
    assert settings.keyfile is None
    assert settings.public_hosts == ("chat.example.com", "www.chat.example.com")
    assert settings.trusted_proxies == ("127.0.0.1", "10.0.0.0/8", "::1")


def test_flags_win_over_variables() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--certfile", "a.pem", "--keyfile", "a.key", "--public-hosts", "x"])
    settings = Settings.from_args(args, {"TRIO_BROADCAST_CERTFILE": "b.pem"})
    assert (settings.certfile, settings.keyfile, settings.public_hosts) == (
        "a.pem",
        "a.key",
        ("x",),
    )


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"keyfile": "a.key"}, "keyfile needs certfile"),
        ({"trusted_proxies": ("10.0.0.0/8", "proxy.example")}, "not an IP address or network"),
        ({"public_hosts": ("https://chat.example.com",)}, "host names"),
        ({"public_hosts": ("chat.example.com:8443",)}, "host names"),
        ({"public_hosts": ("a.example,b.example",)}, "host names"),
    ],
)
def test_bad_values_stop_the_server(values: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings(**values)  # type: ignore[arg-type]


def test_an_ipv6_public_host_is_a_host_name() -> None:
    assert Settings(public_hosts=("::1",)).public_hosts == ("::1",)


def test_tls_reaches_hypercorn_with_http1_only() -> None:
    config = hypercorn_config(Settings(certfile="chain.pem"))
    assert (config.certfile, config.keyfile) == ("chain.pem", "chain.pem")  # key in certfile
    assert config.alpn_protocols == ["http/1.1"]
    config = hypercorn_config(Settings(certfile="chain.pem", keyfile="key.pem"))
    assert config.keyfile == "key.pem"
    assert not hypercorn_config(Settings()).ssl_enabled


def test_a_secure_server_has_https_and_wss_urls() -> None:
    assert ServerInfo("127.0.0.1", 8443, secure=True).ws_url == "wss://127.0.0.1:8443/ws/events"
    assert ServerInfo("::1", 8000).url == "http://[::1]:8000"
    assert ServerInfo("::1", 8000).ws_url == "ws://[::1]:8000/ws/events"


def test_client_options_parse() -> None:
    args = build_parser().parse_args(
        ["listen", "wss://h/", "--insecure", "--header", "Authorization: Bearer a:b"]
    )
    assert args.insecure
    assert args.cafile is None
    assert args.header == [("Authorization", "Bearer a:b")]


@pytest.mark.parametrize(
    "option",
    [
        ["--header", "Origin: https://x.example"],
        ["--header", "Sec-WebSocket-Protocol: x"],
        ["--header", "no colon"],
        ["--cafile", "/nonexistent/ca.pem"],
    ],
)
def test_bad_client_options_are_usage_errors(
    option: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["send", "wss://h/", "x", *option])
    assert exited.value.code == 2
    assert option[0] in capsys.readouterr().err
