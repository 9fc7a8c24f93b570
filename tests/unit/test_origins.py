"""Which browser origins may open a WebSocket (cross-site WebSocket hijacking)."""

from __future__ import annotations

import pytest

from trio_broadcast.server.origins import origin_allowed


@pytest.mark.parametrize("host", ["example.com", None])
def test_no_origin_is_allowed(host: str | None) -> None:
    assert origin_allowed(None, host, ())


@pytest.mark.parametrize(
    ("origin", "host"),
    [
        ("http://example.com", "example.com"),
        ("http://example.com", "example.com:80"),
        ("http://example.com:80", "example.com"),
        ("https://example.com", "example.com"),
        ("https://example.com", "example.com:443"),
        ("https://example.com:443", "example.com"),
        ("http://example.com:8000", "example.com:8000"),
        ("http://127.0.0.1:8000", "127.0.0.1:8000"),
        ("http://[::1]:8000", "[::1]:8000"),
        ("http://[::1]", "[::1]:80"),
        ("http://Example.COM", "example.com"),
        ("http://example.com", "EXAMPLE.com:80"),
    ],
)
def test_same_host_and_port_is_allowed(origin: str, host: str) -> None:
    assert origin_allowed(origin, host, (), ("example.com", "127.0.0.1"))


@pytest.mark.parametrize(
    "origin",
    [
        "http://127.0.0.1:8000",
        "http://[::1]:8000",
        "http://localhost:8000",
        "http://LOCALHOST:8000",
    ],
)
def test_own_origin_by_ip_or_localhost_needs_no_listing(origin: str) -> None:
    host = origin.removeprefix("http://")
    assert origin_allowed(origin, host, ())


def test_dns_rebinding_page_is_refused() -> None:
    """evil.example rebound to the server's address: Origin and Host agree, but name no host
    the server is known by."""
    assert not origin_allowed("http://evil.example:8000", "evil.example:8000", ())
    public = ("chat.example.com",)
    assert not origin_allowed("http://evil.example:8000", "evil.example:8000", (), public)
    assert origin_allowed("https://chat.example.com", "chat.example.com", (), public)
    assert origin_allowed("https://Chat.Example.com.", "chat.example.com.", (), public)


def test_star_trusts_any_host_name() -> None:
    assert origin_allowed("http://evil.example", "evil.example", (), ("*",))
    assert not origin_allowed("http://evil.example", "other.example", (), ("*",))


@pytest.mark.parametrize(
    ("origin", "host"),
    [
        ("http://evil.example", "example.com"),
        ("http://example.com.evil.example", "example.com"),
        ("http://example.com:8001", "example.com:8000"),
        ("http://example.com", "example.com:8000"),
        ("https://example.com", "example.com:80"),
        ("http://example.com", "example.com:443"),
        ("http://[::1]:8001", "[::1]:8000"),
        ("ws://example.com", "example.com"),
        ("file://example.com", "example.com"),
        ("chrome-extension://abcdef", "abcdef"),
        ("http://", "example.com"),
        ("garbage", "example.com"),
    ],
)
def test_other_origin_is_refused(origin: str, host: str) -> None:
    assert not origin_allowed(origin, host, (), ("example.com", "abcdef"))


def test_other_origin_is_refused_without_a_host_header() -> None:
    assert not origin_allowed("http://example.com", None, ())


def test_listed_origin_is_allowed_on_any_host() -> None:
    allowed = ("https://app.example.org", "http://localhost:5173")
    assert origin_allowed("https://app.example.org", "api.example.com", allowed)
    assert origin_allowed("http://localhost:5173", None, allowed)


def test_listing_matches_the_exact_origin_only() -> None:
    allowed = ("https://app.example.org",)
    assert not origin_allowed("http://app.example.org", "api.example.com", allowed)
    assert not origin_allowed("https://app.example.org:8443", "api.example.com", allowed)
    assert not origin_allowed("https://evil.example", "api.example.com", allowed)


@pytest.mark.parametrize("origin", ["https://anything.example", "http://localhost:1234"])
def test_star_allows_any_origin(origin: str) -> None:
    assert origin_allowed(origin, "example.com", ("*",))


@pytest.mark.parametrize("host", ["example.com", "null", None])
def test_null_origin_is_refused(host: str | None) -> None:
    assert not origin_allowed("null", host, ())
    assert not origin_allowed("null", host, ("https://app.example.org",))
