"""Shared fixtures: leaked-thread detection for every test, TLS certificates."""

from __future__ import annotations

import logging
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from redis_server import redis_server  # noqa: F401  (the fixture, for tests of shared crawls)
from rendering import browser  # noqa: F401  (the fixture, for tests that render in Chromium)

# A shell without job control starts background commands with SIGINT ignored, and an
# ignored signal stays ignored across exec: the subprocesses that the Ctrl-C tests
# interrupt would never see their SIGINT. A caught signal is reset to the default on
# exec, so catching it here gives every child the disposition a terminal would.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _live_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.is_alive()}


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Fail a test that leaves threads behind (once they had a moment to exit)."""
    before = _live_threads()
    yield
    deadline = time.monotonic() + 5.0
    leaked = _live_threads() - before
    while leaked and time.monotonic() < deadline:
        # Threads that are finishing: join them briefly rather than sleeping blindly.
        for t in leaked:
            t.join(timeout=0.05)
        leaked = _live_threads() - before
    assert not leaked, f"leaked threads: {sorted(t.name for t in leaked)}"


@pytest.fixture(autouse=True)
def root_logger_restored() -> Iterator[None]:
    """A CLI run in the test process (CliRunner) configures the root logger (`-q` sets it
    to ERROR): give the next test the level and handlers it had, so its caplog sees
    warnings whatever ran before it."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    root.setLevel(level)
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()


_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


@pytest.fixture(autouse=True)
def no_proxy_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Crawls take their proxy from the environment by default: tests talk to 127.0.0.1
    directly unless they set a proxy themselves (children inherit this environment)."""
    for name in _PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate and key for a TLS server on 127.0.0.1."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
            *("-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return cert, key


class LocalCA(NamedTuple):
    """A certificate authority made for the test session, and two server certificates it
    signed: ``local`` for 127.0.0.1 and localhost, ``other`` for other.test only."""

    ca: Path  # the CA certificate (PEM): what SSL_CERT_FILE names to trust it
    local: tuple[Path, Path]  # (certificate, key)
    other: tuple[Path, Path]


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=30)


@pytest.fixture(scope="session")
def local_ca(tmp_path_factory: pytest.TempPathFactory) -> LocalCA:
    """Certificates that pass full verification (chain and host name) once the CA is
    trusted. The extensions are the ones Python 3.13's strict X.509 checks insist on."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    folder = tmp_path_factory.mktemp("ca")
    ca, ca_key = folder / "ca.pem", folder / "ca.key"
    _openssl(
        *("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
        *("-subj", "/CN=shoal test CA", "-keyout", str(ca_key), "-out", str(ca)),
        *("-addext", "basicConstraints=critical,CA:TRUE"),
        *("-addext", "keyUsage=critical,keyCertSign,cRLSign"),
    )

    def leaf(name: str, alt_names: str) -> tuple[Path, Path]:
        cert, key, csr = (folder / f"{name}.{ext}" for ext in ("pem", "key", "csr"))
        extensions = folder / f"{name}.ext"
        extensions.write_text(
            f"subjectAltName={alt_names}\n"
            "basicConstraints=critical,CA:FALSE\n"
            "keyUsage=critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=serverAuth\n"
            "subjectKeyIdentifier=hash\n"
            "authorityKeyIdentifier=keyid,issuer\n"
        )
        _openssl(
            *("req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}"),
            *("-keyout", str(key), "-out", str(csr)),
        )
        _openssl(
            *("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key)),
            *("-CAcreateserial", "-days", "2", "-out", str(cert), "-extfile", str(extensions)),
        )
        return cert, key

    return LocalCA(
        ca=ca,
        local=leaf("local", "IP:127.0.0.1,DNS:localhost"),
        other=leaf("other", "DNS:other.test"),
    )


def interrupt_when_ready(code: str) -> tuple[int, str, str]:
    """Run ``code`` in a child Python, send it SIGINT once it prints ``ready``, and return
    (exit code, stdout, stderr). Bounded: the child gets 60 s to exit, then is killed."""
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    return proc.returncode, out, err
