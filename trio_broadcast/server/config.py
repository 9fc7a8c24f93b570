"""Server settings: one frozen record, read from defaults, ``TRIO_BROADCAST_*`` and CLI flags.

Every field carries its unit beside its default and a one-line ``help`` in its metadata; the CLI
flags (``--outbox-messages``) and environment variables (``TRIO_BROADCAST_OUTBOX_MESSAGES``) are
derived from the field names, so a new setting is one new field here.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from ..errors import ConfigError

ENV_PREFIX = "TRIO_BROADCAST_"

KIB = 1024
MIB = 1024 * KIB
SECONDS = 1.0
FRAME_OVERHEAD = 1024  # bytes a message frame adds to the client's text, generously


def _positive(_inst: object, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None and not value > 0:  # written so that NaN is refused too
        raise ConfigError(f"{attribute.name} must be positive, got {value!r}")


def _non_negative(_inst: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if value < 0:
        raise ConfigError(f"{attribute.name} must not be negative, got {value!r}")


def _port(_inst: object, attribute: attrs.Attribute[Any], value: int) -> None:
    if not 0 <= value <= 65535:
        raise ConfigError(f"{attribute.name} must be 0..65535, got {value!r}")


def _choice(*choices: str) -> Any:
    def check(_inst: object, attribute: attrs.Attribute[Any], value: str) -> None:
        if value not in choices:
            raise ConfigError(
                f"{attribute.name} must be one of {', '.join(choices)}, got {value!r}"
            )

    return check


def _host_names(_inst: object, attribute: attrs.Attribute[Any], value: tuple[str, ...]) -> None:
    for name in value:
        port = ":" in name and name.count(":") == 1  # IPv6 addresses have several
        if not name or port or any(char in name for char in "/@ ,[]"):
            raise ConfigError(
                f"{attribute.name} lists host names (chat.example.com), not origins or "
                f"host:port, got {name!r}"
            )


def _networks(_inst: object, attribute: attrs.Attribute[Any], value: tuple[str, ...]) -> None:
    for network in value:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise ConfigError(
                f"{attribute.name}: {network!r} is not an IP address or network"
            ) from None


REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def _redis_url(_inst: object, attribute: attrs.Attribute[Any], value: str | None) -> None:
    if value is not None and not value.startswith(REDIS_SCHEMES):
        raise ConfigError(
            f"{attribute.name} must start with {', '.join(REDIS_SCHEMES)}, got {value!r}"
        )


def _to_tuple(value: Iterable[str]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@attrs.frozen(kw_only=True)
class Settings:
    """Everything an operator can set. ``None`` disables a limit where the type allows it."""

    host: str = attrs.field(default="127.0.0.1", metadata=_help("address to listen on"))
    port: int = attrs.field(default=8000, validator=_port, metadata=_help("TCP port; 0 picks one"))

    max_connections: int | None = attrs.field(
        default=10_000,
        validator=_positive,
        metadata=_help("connections over this are closed with 1013"),
    )
    max_message_bytes: int = attrs.field(
        default=64 * KIB,
        validator=_positive,
        metadata=_help("largest client frame, bytes; larger frames close with 1009"),
    )
    outbox_messages: int = attrs.field(
        default=1024,
        validator=_positive,
        metadata=_help("events queued per client before it counts as a slow consumer"),
    )
    outbox_bytes: int = attrs.field(
        default=4 * MIB,
        validator=_positive,
        metadata=_help("bytes queued per client before it counts as a slow consumer"),
    )
    history_size: int = attrs.field(
        default=1000,
        validator=_non_negative,
        metadata=_help("broadcasts kept for resume; 0 disables resume"),
    )
    history_ttl: float | None = attrs.field(
        default=300 * SECONDS,
        validator=_positive,
        metadata=_help("seconds a broadcast stays available for resume"),
    )
    publish_rate: float | None = attrs.field(
        default=20.0,
        validator=_positive,
        metadata=_help("messages per second a client may publish (token bucket refill)"),
    )
    publish_burst: int = attrs.field(
        default=40,
        validator=_positive,
        metadata=_help("messages a client may publish at once (token bucket size)"),
    )
    rate_limit_strikes: int | None = attrs.field(
        default=20,
        validator=_positive,
        metadata=_help(
            "rate-limited messages (leaking one per second) before the client is closed with 1008"
        ),
    )
    allowed_origins: tuple[str, ...] = attrs.field(
        default=(),
        converter=_to_tuple,
        metadata=_help(
            "extra browser origins allowed to connect (comma-separated, '*' for any); "
            "the page's own origin is always allowed"
        ),
    )
    public_hosts: tuple[str, ...] = attrs.field(
        default=(),
        converter=_to_tuple,
        validator=_host_names,
        metadata=_help(
            "host names the server is reached at (comma-separated, '*' for any): a page served "
            "from one of them may connect as the same origin; IP addresses and localhost "
            "always may (against DNS rebinding)"
        ),
    )
    trusted_proxies: tuple[str, ...] = attrs.field(
        default=(),
        converter=_to_tuple,
        validator=_networks,
        metadata=_help(
            "addresses or networks (comma-separated, e.g. 127.0.0.1,10.0.0.0/8) of proxies "
            "whose X-Forwarded-For / Forwarded headers name the client"
        ),
    )
    certfile: str | None = attrs.field(
        default=None,
        metadata=_help("PEM certificate chain: serve https:// and wss:// (with keyfile)"),
    )
    keyfile: str | None = attrs.field(
        default=None,
        metadata=_help("PEM private key of certfile; default: the key is in certfile"),
    )
    ping_interval: float | None = attrs.field(
        default=20 * SECONDS,
        validator=_positive,
        metadata=_help("seconds between WebSocket pings"),
    )
    idle_timeout: float | None = attrs.field(
        default=60 * SECONDS,
        validator=_positive,
        metadata=_help("seconds without any data (frame or pong) before a connection is dropped"),
    )
    write_timeout: float | None = attrs.field(
        default=10 * SECONDS,
        validator=_positive,
        metadata=_help(
            "seconds a peer may leave sent data unacknowledged (stopped reading) before it is "
            "dropped (TCP_USER_TIMEOUT)"
        ),
    )
    write_delay: float = attrs.field(
        default=0.0,
        validator=_non_negative,
        metadata=_help(
            "least pause after each broadcaster pass, seconds (after a pass over 1 ms, a "
            "quarter of its time if longer): messages gather meanwhile and go out together"
        ),
    )
    shutdown_timeout: float = attrs.field(
        default=5 * SECONDS,
        validator=_positive,
        metadata=_help("seconds clients get to take their 1001 close on shutdown"),
    )
    log_level: str = attrs.field(
        default="info",
        validator=_choice("debug", "info", "warning", "error"),
        metadata=_help("log level"),
    )
    compression: bool = attrs.field(
        default=False,
        metadata=_help(
            "negotiate permessage-deflate with clients that offer it (browsers do): less "
            "bandwidth, but a zlib context and a compression per client for every frame"
        ),
    )
    log_json: bool = attrs.field(default=False, metadata=_help("log one JSON object per line"))
    access_log: bool = attrs.field(default=False, metadata=_help("log every HTTP request"))
    static_dir: str | None = attrs.field(
        default=None, metadata=_help("folder with the built UI; default: the packaged one")
    )
    redis_url: str | None = attrs.field(
        default=None,
        validator=_redis_url,
        metadata=_help(
            "Redis backplane (redis://, rediss://, unix://): every server on it shares one "
            "order, one seq and one history (experimental); unset: one process, in memory"
        ),
    )
    redis_prefix: str = attrs.field(
        default="trio-broadcast:",
        metadata=_help("prefix of the backplane's Redis keys, so deployments can share a Redis"),
    )
    redis_cluster: bool = attrs.field(
        default=False,
        metadata=_help(
            "redis_url names a node of a Redis Cluster (redis:// or rediss://): the client "
            "finds the others, and follows the log's slot when it moves"
        ),
    )
    workers: int = attrs.field(
        default=1,
        validator=_positive,
        metadata=_help(
            "server processes sharing the port (trio-broadcast serve only); above 1 needs "
            "redis_url, so that they share one audience"
        ),
    )

    def __attrs_post_init__(self) -> None:
        if self.keyfile is not None and self.certfile is None:
            raise ConfigError("keyfile needs certfile")
        if self.redis_cluster and not (self.redis_url or "").startswith(("redis://", "rediss://")):
            raise ConfigError("redis_cluster needs a redis:// or rediss:// redis_url")
        if self.workers > 1 and self.redis_url is None:
            raise ConfigError(
                f"workers={self.workers} needs redis_url: without a shared backplane each "
                "worker would hold its own audience, and clients on different workers would "
                "never see each other's messages"
            )
        if self.outbox_bytes < self.max_message_bytes + FRAME_OVERHEAD:
            raise ConfigError(
                f"outbox_bytes ({self.outbox_bytes}) must hold at least one message of "
                f"max_message_bytes ({self.max_message_bytes}) plus {FRAME_OVERHEAD} bytes"
            )
        if (
            self.idle_timeout is not None
            and self.ping_interval is not None
            and self.idle_timeout <= self.ping_interval
        ):
            raise ConfigError(
                f"idle_timeout ({self.idle_timeout}) must be longer than "
                f"ping_interval ({self.ping_interval}), or pings cannot keep connections alive"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from ``TRIO_BROADCAST_*`` variables, then ``overrides`` (already typed).

        Raises:
            ConfigError: a variable does not parse or a value is out of range.
        """
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in attrs.fields(cls):
            raw = environ.get(ENV_PREFIX + field.name.upper())
            if raw is not None:
                values[field.name] = _parse(field, raw, source=ENV_PREFIX + field.name.upper())
        values.update(overrides)
        return cls(**values)

    @classmethod
    def from_args(
        cls, args: argparse.Namespace, environ: Mapping[str, str] | None = None
    ) -> Settings:
        """Settings from the environment, overridden by flags given on the command line.

        Flags that were not given are absent from ``args`` (``argparse.SUPPRESS``), so
        ``--publish-rate off`` can turn off a limit that a variable set.
        """
        given = {
            field.name: getattr(args, field.name)
            for field in attrs.fields(cls)
            if hasattr(args, field.name)
        }
        return cls.from_env(environ, **given)

    def limits(self) -> dict[str, Any]:
        """The limits a client is told about in its welcome frame."""
        return {
            "max_message_bytes": self.max_message_bytes,
            "publish_rate": self.publish_rate,
            "publish_burst": self.publish_burst,
            "outbox_messages": self.outbox_messages,
            "outbox_bytes": self.outbox_bytes,
            "history_size": self.history_size,
            "history_ttl": self.history_ttl,
            "ping_interval": self.ping_interval,
            "idle_timeout": self.idle_timeout,
        }


def _base_type(field: attrs.Attribute[Any]) -> str:
    return str(field.type).split("|")[0].strip()


def _parse(field: attrs.Attribute[Any], raw: str, *, source: str) -> Any:
    """Turn one textual value (env var or flag) into the field's type."""
    kind = _base_type(field)
    text = raw.strip()
    nullable = "None" in str(field.type)
    if nullable and text.lower() in {"none", "off", "null", ""}:
        return None
    if kind == "bool":
        lowered = text.lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
        raise ConfigError(f"{source}: cannot read {raw!r} as a boolean")
    try:
        if kind == "int":
            return int(text)
        if kind == "float":
            return float(text)
        if kind.startswith("tuple"):
            return tuple(part.strip() for part in text.split(",") if part.strip())
    except ValueError:
        raise ConfigError(f"{source}: cannot read {raw!r} as {kind}") from None
    return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one ``--flag`` per setting; an absent flag leaves the env/default value alone."""
    for field in attrs.fields(Settings):
        flag = "--" + field.name.replace("_", "-")
        default = field.default
        shown = ",".join(default) if isinstance(default, tuple) else default
        help_text = f"{field.metadata.get('help', '')} (default: {shown}; env {ENV_PREFIX}"
        help_text += f"{field.name.upper()})"
        if _base_type(field) == "bool":
            parser.add_argument(
                flag,
                dest=field.name,
                action=argparse.BooleanOptionalAction,
                default=argparse.SUPPRESS,
                help=help_text,
            )
            continue

        def convert(raw: str, field: attrs.Attribute[Any] = field, flag: str = flag) -> Any:
            try:
                return _parse(field, raw, source=flag)
            except ConfigError as error:
                raise argparse.ArgumentTypeError(str(error)) from None

        parser.add_argument(
            flag, dest=field.name, type=convert, default=argparse.SUPPRESS, help=help_text
        )


def describe(settings: Settings) -> Sequence[tuple[str, Any]]:
    """(name, value) pairs, for the start-up log line."""
    return [(field.name, getattr(settings, field.name)) for field in attrs.fields(Settings)]
