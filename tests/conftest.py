"""Shared fixtures: leaked-thread detection for every test."""

from __future__ import annotations

import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

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
