"""A private redis-server per test: never the machine's shared one.

Each server listens on a unix socket in its own short temporary folder (socket paths are
limited to ~100 bytes, pytest's tmp paths can be longer) with AOF persistence
(appendfsync always) in its own data folder, so a test can kill it with SIGKILL and start
it again on the same data.
Without the binary the tests are skipped, except under CI=true, where that fails the run
(.ci/run installs redis-server).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

BINARY = "redis-server"


class RedisServer:
    def __init__(
        self, data: Path, *, password: str | None = None, appendfsync: str = "always"
    ) -> None:
        self.data = data
        self.password = password
        self.appendfsync = appendfsync
        self._sockdir = Path(tempfile.mkdtemp(prefix="shoal-redis-"))
        self.socket = self._sockdir / "redis.sock"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"unix://{auth}{self.socket}"

    def start(self) -> None:
        args = [
            BINARY,
            *("--port", "0", "--unixsocket", str(self.socket), "--unixsocketperm", "700"),
            *("--dir", str(self.data), "--save", "", "--appendonly", "yes"),
            # always and no both write the AOF before answering, so a kill -9 of Redis
            # loses nothing acknowledged (always also survives a machine crash). everysec
            # may answer before writing when an fsync lags (a loaded disk): not used.
            *("--appendfsync", self.appendfsync),
            # Redis 7.0 cuts a torn AOF tail inside a script's MULTI block and a later
            # restart applies half a script: refuse to load it, and repair it first (below).
            *("--aof-load-truncated", "no"),
            *("--logfile", str(self.data / "redis.log"), "--daemonize", "no"),
        ]
        if self.password:
            args += ["--requirepass", self.password]
        manifest = self.data / "appendonlydir" / "appendonly.aof.manifest"
        if manifest.exists():  # a restart: cut a torn tail back to the last whole script
            subprocess.run(
                ["redis-check-aof", "--fix", str(manifest)],
                input=b"y\n",
                capture_output=True,
                timeout=60,
                check=False,
            )
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while not self._answers():
            if self.proc.poll() is not None:
                log = (self.data / "redis.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server exited {self.proc.returncode}: {log}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("redis-server did not answer within 20 s")
            time.sleep(0.02)

    def _answers(self) -> bool:
        """A PING on the socket (AOF loading answers -LOADING, which is not ready)."""
        if not self.socket.exists():
            return False
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(2)
            try:
                s.connect(str(self.socket))
                if self.password:
                    s.sendall(f"AUTH {self.password}\r\n".encode())
                    s.recv(100)
                s.sendall(b"PING\r\n")
                return s.recv(100).startswith((b"+PONG", b"-NOAUTH"))
            except OSError:
                return False

    def kill(self) -> None:
        """SIGKILL: what a crash or an OOM kill does."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
            self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._sockdir, ignore_errors=True)


def _need_binary() -> None:
    if shutil.which(BINARY) is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{BINARY} is not installed (CI must install it: see .ci/run)")
        pytest.skip(f"{BINARY} is not installed")


@contextlib.contextmanager
def running(
    data: Path, *, password: str | None = None, appendfsync: str = "always"
) -> Iterator[RedisServer]:
    _need_binary()
    data.mkdir(parents=True, exist_ok=True)
    server = RedisServer(data, password=password, appendfsync=appendfsync)
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh redis-server for this test, on a unix socket, with AOF on."""
    with running(tmp_path / "redis") as server:
        yield server


@pytest.fixture(scope="session")
def redis_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for a whole test session (tests keep apart by crawl id)."""
    with running(tmp_path_factory.mktemp("redis-session")) as server:
        yield server
