"""Settings: defaults, ``TRIO_BROADCAST_*`` variables and CLI flags."""

from __future__ import annotations

import argparse
from typing import Any

import attrs
import pytest

from trio_broadcast.errors import BroadcastError, ConfigError
from trio_broadcast.server.config import ENV_PREFIX, Settings, add_arguments


def parse_flags(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def env(**values: str) -> dict[str, str]:
    return {ENV_PREFIX + name.upper(): value for name, value in values.items()}


def test_defaults_are_valid() -> None:
    settings = Settings()
    assert settings.port == 8000
    assert settings.idle_timeout is not None
    assert settings.ping_interval is not None
    assert settings.idle_timeout > settings.ping_interval


def test_no_variables_means_the_defaults() -> None:
    assert Settings.from_env({}) == Settings()


def test_from_env_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIO_BROADCAST_OUTBOX_MESSAGES", "77")
    assert Settings.from_env().outbox_messages == 77


def test_settings_are_frozen() -> None:
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        Settings().port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("name", "raw", "value"),
    [
        ("port", "9000", 9000),
        ("port", " 9000 ", 9000),
        ("outbox_messages", "16", 16),
        ("max_connections", "5", 5),
        ("history_size", "0", 0),
        ("publish_rate", "2.5", 2.5),
        ("publish_rate", "3", 3.0),
        ("history_ttl", "1e3", 1000.0),
        ("host", "0.0.0.0", "0.0.0.0"),
        ("log_level", "debug", "debug"),
        ("static_dir", "/srv/ui", "/srv/ui"),
    ],
)
def test_variable_is_parsed_to_the_field_type(name: str, raw: str, value: Any) -> None:
    parsed = getattr(Settings.from_env(env(**{name: raw})), name)
    assert parsed == value
    assert type(parsed) is type(value)


@pytest.mark.parametrize("raw", ["none", "None", "OFF", "off", "null", ""])
@pytest.mark.parametrize(
    "name", ["max_connections", "publish_rate", "history_ttl", "rate_limit_strikes", "static_dir"]
)
def test_none_or_off_disables_a_nullable_setting(name: str, raw: str) -> None:
    assert getattr(Settings.from_env(env(**{name: raw})), name) is None


def test_none_or_off_disables_keep_alive() -> None:
    settings = Settings.from_env(env(ping_interval="off", idle_timeout="none"))
    assert (settings.ping_interval, settings.idle_timeout) == (None, None)


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("1", True),
        ("true", True),
        ("Yes", True),
        ("on", True),
        ("0", False),
        ("false", False),
        ("NO", False),
        ("off", False),
    ],
)
def test_boolean_variable_is_parsed(raw: str, value: bool) -> None:
    assert Settings.from_env(env(log_json=raw)).log_json is value


def test_comma_separated_variable_is_a_tuple() -> None:
    settings = Settings.from_env(
        env(allowed_origins=" https://a.example , http://b.example:8080,,")
    )
    assert settings.allowed_origins == ("https://a.example", "http://b.example:8080")


def test_single_allowed_origin_string_becomes_a_tuple() -> None:
    assert Settings(allowed_origins="*").allowed_origins == ("*",)


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("port", "eighty"),
        ("port", "80.5"),
        ("outbox_messages", "1e3"),
        ("outbox_messages", "none"),
        ("publish_rate", "fast"),
        ("history_ttl", "5m"),
        ("log_json", "maybe"),
        ("log_json", "none"),
    ],
)
def test_unparsable_variable_raises_config_error_naming_it(name: str, raw: str) -> None:
    variable = ENV_PREFIX + name.upper()
    with pytest.raises(ConfigError, match=variable):
        Settings.from_env({variable: raw})


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("port", "70000"),
        ("port", "-1"),
        ("outbox_messages", "0"),
        ("outbox_bytes", "-5"),
        ("max_connections", "0"),
        ("history_size", "-1"),
        ("history_ttl", "0"),
        ("publish_rate", "-1.5"),
        ("write_delay", "-0.1"),
        ("shutdown_timeout", "0"),
        ("log_level", "loud"),
    ],
)
def test_out_of_range_variable_raises_config_error_naming_the_setting(name: str, raw: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env(env(**{name: raw}))


def test_config_error_is_a_value_error_and_a_broadcast_error() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings(port=-1)
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, BroadcastError)


@pytest.mark.parametrize("name", ["publish_rate", "history_ttl", "shutdown_timeout"])
def test_nan_is_not_a_positive_number(name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env(env(**{name: "nan"}))


@pytest.mark.parametrize(
    ("ping_interval", "idle_timeout"), [(20.0, 20.0), (20.0, 10.0), (5.0, 4.999)]
)
def test_idle_timeout_not_longer_than_ping_interval_is_rejected(
    ping_interval: float, idle_timeout: float
) -> None:
    with pytest.raises(ConfigError, match="idle_timeout"):
        Settings(ping_interval=ping_interval, idle_timeout=idle_timeout)


@pytest.mark.parametrize(
    ("ping_interval", "idle_timeout"), [(20.0, 20.001), (None, 1.0), (20.0, None), (None, None)]
)
def test_idle_timeout_longer_than_ping_interval_or_disabled_is_accepted(
    ping_interval: float | None, idle_timeout: float | None
) -> None:
    settings = Settings(ping_interval=ping_interval, idle_timeout=idle_timeout)
    assert (settings.ping_interval, settings.idle_timeout) == (ping_interval, idle_timeout)


def test_idle_timeout_check_applies_to_variables() -> None:
    with pytest.raises(ConfigError, match="idle_timeout"):
        Settings.from_env(env(ping_interval="30", idle_timeout="30"))


def test_overrides_beat_variables() -> None:
    settings = Settings.from_env(env(port="9000", log_level="debug"), port=9100)
    assert (settings.port, settings.log_level) == (9100, "debug")


def test_limits_are_the_ones_the_welcome_frame_documents() -> None:
    settings = Settings(publish_rate=None, history_ttl=None)
    assert settings.limits() == {
        "max_message_bytes": settings.max_message_bytes,
        "publish_rate": None,
        "publish_burst": settings.publish_burst,
        "outbox_messages": settings.outbox_messages,
        "outbox_bytes": settings.outbox_bytes,
        "history_size": settings.history_size,
        "history_ttl": None,
        "ping_interval": settings.ping_interval,
        "idle_timeout": settings.idle_timeout,
    }


# -- command-line flags ----------------------------------------------------------------------


def test_every_setting_has_a_flag() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    dests = {action.dest for action in parser._actions}
    for field in attrs.fields(Settings):
        assert field.name in dests


def test_no_flags_means_the_environment() -> None:
    environ = env(port="9000", publish_rate="off", allowed_origins="https://a.example")
    assert Settings.from_args(parse_flags(), environ) == Settings.from_env(environ)


def test_flags_override_variables() -> None:
    environ = env(port="9000", outbox_messages="2048", log_json="true", history_ttl="60")
    args = parse_flags("--port", "9100", "--no-log-json", "--history-ttl", "30.5")
    settings = Settings.from_args(args, environ)
    assert settings.port == 9100
    assert settings.log_json is False
    assert settings.history_ttl == 30.5
    assert settings.outbox_messages == 2048  # no flag: the variable stands


def test_flags_parse_like_variables() -> None:
    args = parse_flags(
        "--allowed-origins", "https://a.example,https://b.example", "--log-json", "--port", "0"
    )
    settings = Settings.from_args(args, {})
    assert settings.allowed_origins == ("https://a.example", "https://b.example")
    assert settings.log_json is True
    assert settings.port == 0


def test_unparsable_flag_is_a_usage_error_naming_the_flag(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as caught:
        parse_flags("--outbox-messages", "many")
    assert caught.value.code == 2
    assert "--outbox-messages" in capsys.readouterr().err


def test_out_of_range_flag_raises_config_error() -> None:
    with pytest.raises(ConfigError, match="port"):
        Settings.from_args(parse_flags("--port", "70000"), {})


@pytest.mark.parametrize("raw", ["none", "off"])
def test_flag_none_disables_a_limit_even_when_a_variable_sets_it(raw: str) -> None:
    args = parse_flags("--publish-rate", raw, "--max-connections", raw)
    settings = Settings.from_args(args, env(publish_rate="5"))
    assert settings.publish_rate is None
    assert settings.max_connections is None
