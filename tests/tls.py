"""Throw-away TLS material for the security tests, made with the `openssl` CLI.

A CA (self-signed, EC P-256, valid two days), a server certificate it signs for
127.0.0.1 and localhost (in subjectAltName, as hostname checks need), and a PKCS12
keystore of that certificate for the Kafka broker. Nothing here is secret: each
test makes its own in a temp dir.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


@dataclass(frozen=True)
class CertPair:
    """A PEM certificate and its unencrypted PEM key."""

    cert: Path
    key: Path


def openssl(*args: str) -> None:
    """Run `openssl`, skipping the test when it is not installed."""
    exe = shutil.which("openssl")
    if exe is None:
        pytest.skip("the openssl CLI is not installed")
    done = subprocess.run([exe, *args], capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {done.stderr.strip()}")


def make_ca(directory: Path, name: str) -> CertPair:
    """A self-signed CA certificate `<name>.pem` with its key `<name>.key`."""
    pair = CertPair(directory / f"{name}.pem", directory / f"{name}.key")
    openssl("req", "-x509", *EC_KEY, "-keyout", str(pair.key), "-out", str(pair.cert),
            "-days", "2", "-subj", f"/CN=streamrec test CA {name}",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return pair


def make_server_cert(
    directory: Path, ca: CertPair, name: str = "broker",
    names: str = "IP:127.0.0.1,DNS:localhost",
) -> CertPair:
    """A server certificate signed by `ca`, valid for `names` (subjectAltName syntax)."""
    pair = CertPair(directory / f"{name}.pem", directory / f"{name}.key")
    csr = directory / f"{name}.csr"
    ext = directory / f"{name}.ext"
    ext.write_text(f"subjectAltName={names}\nextendedKeyUsage=serverAuth\n")
    openssl("req", *EC_KEY, "-keyout", str(pair.key), "-out", str(csr), "-subj", "/CN=localhost")
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca.cert), "-CAkey", str(ca.key),
            "-CAcreateserial", "-out", str(pair.cert), "-days", "2", "-extfile", str(ext))
    return pair


def make_pkcs12(directory: Path, server: CertPair, ca: CertPair, password: str) -> Path:
    """`server`'s key and certificate chain as a PKCS12 keystore (for Kafka)."""
    path = directory / "broker.p12"
    openssl("pkcs12", "-export", "-in", str(server.cert), "-inkey", str(server.key),
            "-certfile", str(ca.cert), "-name", "broker", "-out", str(path),
            "-passout", f"pass:{password}")
    return path
