#!/usr/bin/env bash
# Installs the system packages the test suite drives for real: Debian's chromium (browser tests),
# nginx (a reverse proxy in front of the server: tests/integration/test_proxy.py) and openssl
# (test certificates for TLS). The tests start nginx themselves, with a configuration of their
# own on ephemeral ports; on a machine with systemd, Debian's package also enables its default
# site on port 80 (`systemctl disable --now nginx` if that is not wanted).
# Does nothing when they are already there; needs root (or sudo) otherwise.
set -euo pipefail
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
if ((${#missing[@]})); then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "installing system packages: ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
