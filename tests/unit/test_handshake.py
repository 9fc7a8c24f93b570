"""The upgrade request checks (Sec-WebSocket-Key, repeated headers) and the client address
behind trusted proxies: pure, without a socket."""

from __future__ import annotations

import base64

import pytest

from trio_broadcast.server.handshake import Handshake, Refusal, check, key_valid
from trio_broadcast.server.proxies import TrustedProxies

GOOD_KEY = base64.b64encode(bytes(range(16))).decode()


def handshake(*headers: tuple[str, str], http_version: str = "1.1") -> Handshake:
    return Handshake.from_scope(
        [(name.encode(), value.encode()) for name, value in headers], http_version
    )


def checked(*headers: tuple[str, str], http_version: str = "1.1") -> Refusal | None:
    return check(
        handshake(*headers, http_version=http_version), allowed_origins=(), public_hosts=()
    )


def test_a_key_of_16_bytes_is_valid() -> None:
    assert key_valid(GOOD_KEY)
    assert key_valid(f" {GOOD_KEY}\t")  # optional whitespace around a header value


@pytest.mark.parametrize(
    "key",
    [
        None,
        "",
        "x",
        "not base64 at all!!",
        base64.b64encode(bytes(15)).decode(),
        base64.b64encode(bytes(17)).decode(),
        base64.b64encode(bytes(16)).decode().rstrip("="),  # padding is part of the form
        GOOD_KEY[:-3] + "*==",
        "dGhlIHNhbXBsZSBub25jZQ==é",
    ],
)
def test_other_keys_are_invalid(key: str | None) -> None:
    assert not key_valid(key)


def test_a_bad_key_is_refused_with_400() -> None:
    refusal = checked(("host", "127.0.0.1:1"), ("sec-websocket-key", "abc"))
    assert refusal is not None
    assert (refusal.status, refusal.reason) == (400, "bad_handshake")


def test_http2_upgrades_have_no_key() -> None:
    assert checked(("host", "127.0.0.1:1"), http_version="2") is None


@pytest.mark.parametrize("name", ["Origin", "Host", "Sec-WebSocket-Key"])
def test_a_repeated_header_is_refused_with_400(name: str) -> None:
    values = {"Origin": "http://127.0.0.1:1", "Host": "127.0.0.1:1", "Sec-WebSocket-Key": GOOD_KEY}
    headers = list(values.items())
    headers.append((name, values[name]))  # the same value twice is still two headers
    refusal = checked(*headers)
    assert refusal is not None
    assert refusal.status == 400
    assert name.lower() in refusal.detail


def test_a_foreign_origin_is_refused_with_403() -> None:
    refusal = checked(
        ("host", "127.0.0.1:1"), ("sec-websocket-key", GOOD_KEY), ("origin", "http://evil.example")
    )
    assert refusal == Refusal(403, "origin not allowed", "origin_rejected")


def test_a_well_formed_request_passes() -> None:
    assert checked(("host", "127.0.0.1:1"), ("sec-websocket-key", GOOD_KEY)) is None
    assert (
        checked(
            ("host", "127.0.0.1:1"),
            ("sec-websocket-key", GOOD_KEY),
            ("origin", "http://127.0.0.1:1"),
        )
        is None
    )


# -- the client's address behind proxies ---------------------------------------------------------

PROXIES = TrustedProxies(["127.0.0.1", "10.0.0.0/8", "::1"])


def test_headers_from_an_untrusted_peer_are_ignored() -> None:
    headers = {"x-forwarded-for": ["203.0.113.7"], "forwarded": ["for=203.0.113.8"]}
    assert PROXIES.client("198.51.100.1", headers) is None
    assert TrustedProxies().client("127.0.0.1", headers) is None
    assert not TrustedProxies()


def test_x_forwarded_for_names_the_client() -> None:
    assert PROXIES.client("127.0.0.1", {"x-forwarded-for": ["203.0.113.7"]}) == "203.0.113.7"


def test_the_chain_is_read_from_the_nearest_proxy() -> None:
    """A client can write anything at the left of the list; only what trusted proxies added
    counts."""
    headers = {"x-forwarded-for": ["6.6.6.6, 203.0.113.7, 10.1.2.3"]}
    assert PROXIES.client("127.0.0.1", headers) == "203.0.113.7"
    repeated = {"x-forwarded-for": ["6.6.6.6", "203.0.113.7, 10.1.2.3"]}
    assert PROXIES.client("127.0.0.1", repeated) == "203.0.113.7"


def test_a_chain_of_proxies_only_gives_the_first() -> None:
    assert PROXIES.client("127.0.0.1", {"x-forwarded-for": ["10.0.0.9, 10.0.0.1"]}) == "10.0.0.9"


def test_no_header_from_a_proxy_gives_none() -> None:
    assert PROXIES.client("127.0.0.1", {}) is None
    assert PROXIES.client("127.0.0.1", {"x-forwarded-for": [" , "]}) is None


@pytest.mark.parametrize(
    ("value", "client"),
    [
        ("for=203.0.113.7", "203.0.113.7"),
        ('for="203.0.113.7:4711";proto=https', "203.0.113.7"),
        ('for="[2001:db8:cafe::17]:4711"', "2001:db8:cafe::17"),
        ("For=6.6.6.6, for=203.0.113.7;by=10.0.0.1, for=10.0.0.2", "203.0.113.7"),
        ("for=_hidden", "_hidden"),
    ],
)
def test_forwarded_names_the_client(value: str, client: str) -> None:
    assert PROXIES.client("::1", {"forwarded": [value]}) == client


def test_x_forwarded_for_wins_over_forwarded() -> None:
    headers = {"x-forwarded-for": ["203.0.113.7"], "forwarded": ["for=6.6.6.6"]}
    assert PROXIES.client("127.0.0.1", headers) == "203.0.113.7"


def test_ports_and_mapped_addresses_are_understood() -> None:
    assert PROXIES.trusted("10.0.0.1:5000")
    assert PROXIES.trusted("[::1]:5000")
    assert PROXIES.trusted("::ffff:10.0.0.1")
    assert not PROXIES.trusted("11.0.0.1")
    assert not PROXIES.trusted("proxy.example")
    headers = {"x-forwarded-for": ["203.0.113.7:5555"]}
    assert PROXIES.client("::ffff:127.0.0.1", headers) == "203.0.113.7"
