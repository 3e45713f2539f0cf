"""A private Redis Sentinel deployment: a primary, a replica and three Sentinels, on free ports.

For tests and the chaos harness (``bench/chaos.py``), like :mod:`devenv.redis_server`: loopback
only, everything in temporary directories, stopped by :meth:`SentinelCluster.stop`. Each
Sentinel gets a generated config (``sentinel monitor <master> 127.0.0.1 <port> 2``, short
``down-after-milliseconds``) in its own directory, since a Sentinel rewrites its config file.

    with sentinel_cluster() as cluster:
        env = cluster.env()                # FCD_REDIS_SENTINELS, FCD_REDIS_SENTINEL_MASTER, ...
        cluster.failover()                 # SENTINEL FAILOVER; waits until the replica is primary
        cluster.primary_port()             # whoever is primary now

``min_replicas_to_write=1`` (the default) makes either server refuse writes while it has no
replica connected: the old primary stops accepting writes the moment the promoted replica leaves
it, so nothing is written there after the switch only to be discarded. (A write acknowledged a
moment *before* the promotion can still be missing: replication is asynchronous; WAIT 1, i.e.
``FCD_DURABILITY=fsync``, closes that. See the README, "Redis durability and high
availability".)
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from devenv.redis_server import PrivateRedis, free_port, start_redis

MASTER_NAME = "fcdmaster"


class SentinelTimeout(RuntimeError):
    """The deployment did not reach the expected state in time."""


def _command(port: int, *args: str, timeout: float = 2.0) -> str:
    """One RESP command to 127.0.0.1:``port``; the raw reply, decoded (enough for tests)."""
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    with socket.create_connection(("127.0.0.1", port), timeout) as sock:
        sock.sendall(b"".join(parts))
        time.sleep(0.02)
        chunks = [sock.recv(65536)]
        sock.settimeout(0.05)
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65536):
                chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


def _info_field(port: int, section: str, name: str) -> str | None:
    try:
        text = _command(port, "INFO", section)
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(f"{name}:"):
            return line.split(":", 1)[1].strip()
    return None


@dataclass
class SentinelCluster:
    """The running deployment. ``servers`` are the two data servers (the first started as
    primary); ``sentinels`` the three Sentinels."""

    master_name: str
    servers: list[PrivateRedis]
    sentinels: list[PrivateRedis]
    workdir: Path
    _stopped: bool = field(default=False, repr=False)

    @property
    def sentinel_addresses(self) -> str:
        """``FCD_REDIS_SENTINELS``'s value: ``127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3``."""
        return ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)

    def env(self) -> dict[str, str]:
        """The ``FCD_*`` variables that point a process at this deployment (``FCD_REDIS_URL``
        emptied, so an inherited one does not conflict)."""
        return {
            "FCD_REDIS_URL": "",
            "FCD_REDIS_SENTINELS": self.sentinel_addresses,
            "FCD_REDIS_SENTINEL_MASTER": self.master_name,
        }

    def primary_port(self) -> int:
        """The port of the server the Sentinels name as primary now."""
        reply = _command(
            self.sentinels[0].port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name
        )
        lines = [line for line in reply.splitlines() if line and line[0] not in "*$"]
        return int(lines[1])

    def server_url(self, port: int) -> str:
        """A direct URL to one data server (for checks; clients should use the Sentinels)."""
        return f"redis://127.0.0.1:{port}/0"

    def role(self, port: int) -> str | None:
        """``master`` or ``slave`` as the server itself reports it (None if unreachable)."""
        return _info_field(port, "replication", "role")

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Until the replica is in sync and every Sentinel knows the replica and the others."""
        deadline = time.monotonic() + timeout
        primary = self.servers[0].port
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, IndexError, ValueError):
                primary = self.primary_port()
            replica = next(s for s in self.servers if s.port != primary)
            synced = _info_field(replica.port, "replication", "master_link_status") == "up"
            known = all(self._sentinel_sees_all(s.port) for s in self.sentinels)
            if synced and known:
                return
            time.sleep(0.1)
        raise SentinelTimeout(f"sentinel deployment on {self.sentinel_addresses} not ready")

    def _sentinel_sees_all(self, port: int) -> bool:
        try:
            reply = _command(port, "SENTINEL", "MASTER", self.master_name)
        except OSError:
            return False
        lines = [line for line in reply.splitlines() if line and line[0] not in "*$"]
        fields = dict(zip(lines[::2], lines[1::2], strict=False))
        return (
            fields.get("num-slaves") == "1"
            and fields.get("num-other-sentinels") == str(len(self.sentinels) - 1)
            and "s_down" not in fields.get("flags", "")
        )

    def failover(self, timeout: float = 60.0) -> int:
        """``SENTINEL FAILOVER <master>``: promote the replica; return the new primary's port
        once the Sentinels name it, it reports ``role:master`` and the old primary has become
        its replica in sync (so the deployment can fail over again)."""
        old = self.primary_port()
        self.wait_ready(timeout)
        deadline = time.monotonic() + timeout
        while True:
            reply = _command(self.sentinels[0].port, "SENTINEL", "FAILOVER", self.master_name)
            if reply.startswith("+OK"):
                break
            # -INPROG or -NOGOODSLAVE right after a previous fail-over: try again shortly
            if time.monotonic() > deadline:
                raise SentinelTimeout(f"SENTINEL FAILOVER refused: {reply.strip()}")
            time.sleep(0.5)
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, IndexError, ValueError):
                new = self.primary_port()
                if new != old and self.role(new) == "master":
                    back = _info_field(old, "replication", "master_link_status") == "up"
                    if back and self.role(old) == "slave":
                        self.wait_ready(max(deadline - time.monotonic(), 1.0))
                        return new
            time.sleep(0.1)
        raise SentinelTimeout(f"fail-over of {self.master_name} did not complete in {timeout}s")

    def stop(self) -> None:
        """Stop the Sentinels, then the servers; idempotent."""
        if self._stopped:
            return
        self._stopped = True
        for server in [*self.sentinels, *self.servers]:
            server.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_sentinel_cluster(
    *,
    master_name: str = MASTER_NAME,
    min_replicas_to_write: int = 1,
    server_args: tuple[str, ...] = (),
    down_after_ms: int = 2000,
    timeout: float = 30.0,
) -> SentinelCluster:
    """Start a primary, its replica and three Sentinels; return once all agree (see
    :meth:`SentinelCluster.wait_ready`). ``server_args`` go to both data servers (e.g. AOF on:
    ``("--appendonly", "yes", "--appendfsync", "everysec")``)."""
    workdir = Path(tempfile.mkdtemp(prefix="fcd-sentinel-"))
    started: list[PrivateRedis] = []
    try:
        common: tuple[str, ...] = ("--min-replicas-to-write", str(min_replicas_to_write))
        common += ("--min-replicas-max-lag", "10", "--repl-diskless-sync", "yes")
        common += ("--repl-diskless-sync-delay", "0", *server_args)
        primary = start_redis(extra_args=common, workdir=_subdir(workdir, "primary"))
        started.append(primary)
        replica_args = (*common, "--replicaof", "127.0.0.1", str(primary.port))
        replica = start_redis(extra_args=replica_args, workdir=_subdir(workdir, "replica"))
        started.append(replica)
        sentinels = []
        for number in range(3):
            directory = _subdir(workdir, f"sentinel{number}")
            config = directory / "sentinel.conf"
            config.write_text(
                f"sentinel monitor {master_name} 127.0.0.1 {primary.port} 2\n"
                f"sentinel down-after-milliseconds {master_name} {down_after_ms}\n"
                f"sentinel failover-timeout {master_name} 10000\n"
                f"sentinel parallel-syncs {master_name} 1\n"
            )
            sentinel = _start_sentinel(config, directory)
            started.append(sentinel)
            sentinels.append(sentinel)
    except BaseException:
        for server in started:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    cluster = SentinelCluster(master_name, [primary, replica], sentinels, workdir)
    try:
        cluster.wait_ready(timeout)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _start_sentinel(config: Path, directory: Path) -> PrivateRedis:
    port = free_port()
    # a Sentinel takes no persistence options: only what start_redis always passes, plus its own
    return start_redis(port, config_file=config, extra_args=["--sentinel"], workdir=directory)


def _subdir(root: Path, name: str) -> Path:
    path = root / name
    path.mkdir()
    return path


@contextlib.contextmanager
def sentinel_cluster(**kwargs: object) -> Iterator[SentinelCluster]:
    """Context manager around :func:`start_sentinel_cluster` that always stops everything."""
    cluster = start_sentinel_cluster(**kwargs)  # type: ignore[arg-type]
    try:
        yield cluster
    finally:
        cluster.stop()
