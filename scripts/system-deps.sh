#!/usr/bin/env bash
# Installs the system packages the test suite drives for real: Debian's chromium (browser tests),
# nginx (a reverse proxy in front of the server: tests/integration/test_proxy.py), openssl
# (test certificates for TLS) and redis-server (the backplane tests: tests/redis_server.py).
# The tests start nginx and redis-server themselves, with configurations of their own on
# ephemeral ports (Redis without persistence, in a temporary folder); on a machine with systemd,
# Debian's packages also enable their default services (nginx on port 80, Redis on 6379:
# `systemctl disable --now nginx redis-server` if that is not wanted).
# Does nothing when they are already there; needs root (or sudo) otherwise.
set -euo pipefail
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ] || missing+=(redis-server)
if ((${#missing[@]})); then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "installing system packages: ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
