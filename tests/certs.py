"""Test certificates made with Debian's ``openssl``: a CA of the test's own and a server
certificate it signed for ``127.0.0.1`` and ``localhost``."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

import attrs
import pytest


@attrs.frozen
class Certificates:
    """PEM files in one directory."""

    ca: Path  # the CA certificate clients trust
    cert: Path  # the server's certificate, signed by the CA
    key: Path  # the server's private key
    combined: Path  # certificate and key in one file

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts the test CA (and only it)."""
        return ssl.create_default_context(cafile=str(self.ca))


def make_certificates(directory: Path) -> Certificates:
    """Make a CA and a server certificate in ``directory`` (skips the test without openssl)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("needs openssl (scripts/system-deps.sh installs it)")
    ca, ca_key = directory / "ca.pem", directory / "ca.key"
    cert, key, csr = directory / "server.pem", directory / "server.key", directory / "server.csr"
    extensions = directory / "server.ext"
    extensions.write_text(
        "basicConstraints = critical, CA:FALSE\n"
        "keyUsage = critical, digitalSignature\n"
        "extendedKeyUsage = serverAuth\n"
        "subjectAltName = IP:127.0.0.1, DNS:localhost\n"
        "subjectKeyIdentifier = hash\n"
        "authorityKeyIdentifier = keyid\n"
    )
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    commands: list[list[object]] = [
        [openssl, "req", "-x509", *ec, "-days", "2", "-subj", "/CN=trio-broadcast test CA",
         "-keyout", ca_key, "-out", ca, "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        [openssl, "req", *ec, "-subj", "/CN=localhost", "-keyout", key, "-out", csr],
        [openssl, "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
         "-days", "2", "-extfile", extensions, "-out", cert],
    ]  # fmt: skip
    for command in commands:
        subprocess.run([str(part) for part in command], check=True, capture_output=True)
    combined = directory / "combined.pem"
    combined.write_text(cert.read_text() + key.read_text())
    return Certificates(ca=ca, cert=cert, key=key, combined=combined)
