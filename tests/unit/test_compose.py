"""compose.yaml claims what can be checked without Docker (there is no Docker engine where it
was written): checked here. Its proxy configuration, deploy/nginx.conf, runs for real in front
of two servers and a Redis in tests/integration/test_scaleout_proxy.py."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs
import yaml

from trio_broadcast.server.config import ENV_PREFIX, Settings
from trio_broadcast.server.proxies import TrustedProxies

ROOT = Path(__file__).resolve().parents[2]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
NGINX_CONF = (ROOT / "deploy" / "nginx.conf").read_text()
# What the image sets (Dockerfile `ENV`), before compose's environment.
IMAGE_ENV = dict(re.findall(r"\b(TRIO_BROADCAST_\w+)=(\S+)", (ROOT / "Dockerfile").read_text()))


def servers() -> dict[str, dict[str, Any]]:
    """The services built from the repository's Dockerfile."""
    return {name: service for name, service in SERVICES.items() if service.get("build") == "."}


def settings(service: dict[str, Any]) -> Settings:
    """What a server container runs with: the image's variables, then the service's."""
    return Settings.from_env({**IMAGE_ENV, **service["environment"]})


def seconds(duration: str) -> float:
    """A compose duration of the form this file uses: ``15s``."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)s", duration)
    assert match, duration
    return float(match[1])


def test_redis_two_servers_of_the_repositorys_image_and_a_proxy() -> None:
    assert set(SERVICES) - set(servers()) == {"redis", "proxy"}
    assert list(servers())[:2] == ["server-1", "server-2"]  # more may be added
    assert "build" not in SERVICES["redis"]
    assert "build" not in SERVICES["proxy"]


def test_every_server_setting_is_one_the_server_knows_and_valid() -> None:
    known = {ENV_PREFIX + field.name.upper() for field in attrs.fields(Settings)}
    for service in servers().values():
        assert set(service["environment"]) <= known
        settings(service)  # raises ConfigError for a value the server would refuse


def test_the_servers_share_the_redis_service_once_it_is_healthy() -> None:
    for service in servers().values():
        url = urlsplit(settings(service).redis_url or "")
        assert (url.scheme, url.hostname, url.port or 6379) == ("redis", "redis", 6379)
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
    assert "--port" not in SERVICES["redis"]["command"]  # Redis on its default port


def test_redis_keeps_the_log_on_a_volume() -> None:
    """A restarted Redis has the log (the same epoch); a crash loses at most the last second,
    which the servers notice (tests/faults: an older snapshot starts a new epoch)."""
    command = SERVICES["redis"]["command"]
    assert command[0] == "redis-server"
    options = dict(zip(command[1::2], command[2::2], strict=True))
    assert options == {"--save": "", "--appendonly": "yes", "--appendfsync": "everysec"}
    assert SERVICES["redis"]["volumes"] == ["redis-data:/data"]
    assert "redis-data" in COMPOSE["volumes"]


def test_only_the_proxy_publishes_a_port_and_nginx_listens_on_it() -> None:
    assert {name for name, service in SERVICES.items() if "ports" in service} == {"proxy"}
    (published,) = SERVICES["proxy"]["ports"]
    container_port = str(published).rsplit(":", 1)[1]
    assert re.findall(r"^\s*listen (\S+);", NGINX_CONF, re.MULTILINE) == [container_port]


def test_the_proxy_runs_deploy_nginx_conf_the_file_the_integration_test_runs() -> None:
    assert SERVICES["proxy"]["image"].startswith("nginx:")
    assert SERVICES["proxy"]["volumes"] == ["./deploy/nginx.conf:/etc/nginx/nginx.conf:ro"]
    integration_test = ROOT / "tests" / "integration" / "test_scaleout_proxy.py"
    assert '/ "deploy" / "nginx.conf"' in integration_test.read_text()


def test_nginx_balances_over_every_server_at_the_port_it_listens_on() -> None:
    upstreams = re.findall(r"^\s*server (\S+):(\d+)\b", NGINX_CONF, re.MULTILINE)
    assert upstreams == [(name, str(settings(s).port)) for name, s in servers().items()]
    assert "least_conn;" in NGINX_CONF


def test_nginx_outwaits_the_servers_pings() -> None:
    """The pings are all the traffic of a quiet connection: nginx must not time it out first."""
    (read_timeout,) = re.findall(r"proxy_read_timeout (\d+)s;", NGINX_CONF)
    for service in servers().values():
        ping_interval = settings(service).ping_interval
        assert ping_interval is not None
        assert int(read_timeout) > ping_interval


def test_every_service_has_a_healthcheck_and_the_proxy_waits_for_healthy_servers() -> None:
    for name, service in SERVICES.items():
        assert service["healthcheck"]["test"][0] == "CMD", name
    assert "127.0.0.1:8000/health" in " ".join(SERVICES["server-1"]["healthcheck"]["test"])
    for name in servers():
        dependency = SERVICES["proxy"]["depends_on"][name]
        # nginx resolves the servers' names once, when it starts: restarted with them.
        assert dependency == {"condition": "service_healthy", "restart": True}


def test_servers_get_longer_to_stop_than_their_shutdown_timeout() -> None:
    for service in servers().values():
        grace = seconds(service["stop_grace_period"])
        assert grace > settings(service).shutdown_timeout


def test_the_proxy_is_trusted_wherever_docker_puts_it_and_nobody_else_is() -> None:
    """nginx's address on the compose network is Docker's choice, from its private pools."""
    for service in servers().values():
        trusted = TrustedProxies(settings(service).trusted_proxies)
        for proxy in ("172.17.0.2", "172.18.0.5", "172.31.255.2", "192.168.16.3", "10.10.0.2"):
            assert trusted.trusted(proxy), proxy
        for client in ("203.0.113.7", "8.8.8.8", "127.0.0.1"):
            assert not trusted.trusted(client), client
