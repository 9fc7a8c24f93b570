"""The backplane's pure parts: entries, keys, script arguments, backoff."""

from __future__ import annotations

import pytest

from trio_broadcast.errors import ConfigError
from trio_broadcast.server.backplane import (
    AppendRequest,
    Backoff,
    Keys,
    ReadTo,
    Record,
    append_args,
)
from trio_broadcast.server.config import Settings


def test_an_entry_decodes_with_its_seq_from_its_id() -> None:
    record = Record.from_entry(
        "42-1",
        {"m": "hi", "s": "abc", "t": "2026-11-28T10:00:00.000000+00:00", "n": "node", "p": "7"},
    )
    assert (record.seq, record.message, record.sender, record.node, record.key) == (
        42,
        "hi",
        "abc",
        "node",
        7,
    )
    assert record.entry_id == "42-1"


def test_a_foreign_entry_is_refused() -> None:
    with pytest.raises(ValueError, match="lacks field"):
        Record.from_entry("1-1", {"m": "hi"})


def test_age_counts_from_the_appending_nodes_clock() -> None:
    record = Record.from_entry(
        "1-1", {"m": "", "s": "", "t": "1970-01-01T00:01:40+00:00", "n": "", "p": "1"}
    )
    assert record.age(110.0) == 10.0
    assert record.age(90.0) == 0.0  # its clock ahead of ours


def test_keys_share_one_hash_tag_under_the_prefix() -> None:
    keys = Keys("app:")
    assert keys.all() == [
        "app:{log}:epoch",
        "app:{log}:seq",
        "app:{log}:stream",
        "app:{log}:marks",
    ]


def test_append_arguments_carry_one_triple_per_publish_in_order() -> None:
    requests = [AppendRequest(1, "a", "one"), AppendRequest(2, "b", "two")]
    assert append_args("e", ReadTo("e0", 41), 1000, True, "n", "t", requests) == [
        "e",
        "e0",
        41,
        1000,
        1,
        "n",
        "t",
        1,
        "a",
        "one",
        2,
        "b",
        "two",
    ]


def test_backoff_doubles_up_to_its_limit_and_resets() -> None:
    backoff = Backoff(0.1, 0.5)
    assert [backoff.next() for _ in range(5)] == [0.1, 0.2, 0.4, 0.5, 0.5]
    backoff.reset()
    assert backoff.next() == 0.1


@pytest.mark.parametrize(
    "url", ["redis://localhost:6379/0", "rediss://user:pw@host:6380", "unix:///run/redis.sock"]
)
def test_redis_url_takes_the_three_schemes(url: str) -> None:
    assert Settings(redis_url=url).redis_url == url


def test_redis_url_refuses_another_scheme() -> None:
    with pytest.raises(ConfigError, match="redis_url"):
        Settings(redis_url="http://localhost:6379")


def test_redis_url_from_the_environment() -> None:
    settings = Settings.from_env({"TRIO_BROADCAST_REDIS_URL": "redis://r:6379"})
    assert settings.redis_url == "redis://r:6379"
    assert settings.redis_prefix == "trio-broadcast:"


@pytest.mark.parametrize("url", [None, "unix:///run/redis.sock"])
def test_a_redis_cluster_needs_a_tcp_url(url: str | None) -> None:
    with pytest.raises(ConfigError, match="redis_cluster needs a redis:// or rediss://"):
        Settings(redis_url=url, redis_cluster=True)


def test_a_redis_cluster_from_the_environment() -> None:
    environment = {
        "TRIO_BROADCAST_REDIS_URL": "rediss://r:6379",
        "TRIO_BROADCAST_REDIS_CLUSTER": "1",
    }
    assert Settings.from_env(environment).redis_cluster is True
