"""Start a private, throw-away PostgreSQL cluster (``initdb`` + ``pg_ctl``) on a free port.

For the archive's tests and benchmarks: the cluster lives in a temporary directory and is
stopped and deleted afterwards; nothing else is ever touched. PostgreSQL refuses to run as root,
so under root the cluster is owned by and run as the ``postgres`` system user (``runuser``).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from devenv.redis_server import free_port


class PostgresUnavailable(RuntimeError):
    """initdb/pg_ctl are missing or the cluster did not start."""


@dataclass(frozen=True)
class PostgresCluster:
    host: str
    port: int
    user: str

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{database}"


def _as_owner(command: list[str], owner: str | None) -> list[str]:
    return ["runuser", "-u", owner, "--", *command] if owner else command


@contextlib.contextmanager
def private_postgres() -> Iterator[PostgresCluster]:
    """A running private cluster (superuser ``fcd``, trust auth on 127.0.0.1 only)."""
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb is None or pg_ctl is None:
        raise PostgresUnavailable("initdb and pg_ctl must be on PATH")
    owner = None
    if os.geteuid() == 0:
        owner = "postgres"
        try:
            pwd.getpwnam(owner)
        except KeyError:
            raise PostgresUnavailable("running as root needs a 'postgres' user") from None
    root = Path(tempfile.mkdtemp(prefix="fcd-pg-"))
    data, socket_dir = root / "data", root / "socket"
    socket_dir.mkdir()
    if owner:
        shutil.chown(root, owner)
        shutil.chown(socket_dir, owner)
    port = free_port()
    try:
        subprocess.run(  # noqa: S603 (initdb/pg_ctl, with arguments of ours)
            _as_owner([initdb, "-D", str(data), "-A", "trust", "-U", "fcd", "--no-sync"], owner),
            check=True,
            capture_output=True,
        )
        options = f"-p {port} -k {socket_dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run(  # noqa: S603 (initdb/pg_ctl, with arguments of ours)
            _as_owner(
                [pg_ctl, "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "start"],
                owner,
            ),
            check=True,
            capture_output=True,
        )
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(root, ignore_errors=True)
        raise PostgresUnavailable(f"private PostgreSQL did not start: {exc.stderr!r}") from None
    try:
        yield PostgresCluster("127.0.0.1", port, "fcd")
    finally:
        subprocess.run(  # noqa: S603 (initdb/pg_ctl, with arguments of ours)
            _as_owner([pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"], owner),
            check=False,
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)
