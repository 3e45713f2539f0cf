"""Start and stop the project's own processes (emulator, workers) for the demo, tests and benches.

Every process started here is owned by the caller and stopped by :meth:`ProcessGroup.stop_all`;
output goes to a log file per process so a failure can be inspected afterwards.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from devenv.redis_server import free_port

EMULATOR_KEY = "sk_test_fcd_emulator"


@dataclass
class ProcessGroup:
    """Processes started for one run, with their log files under ``log_dir``."""

    log_dir: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(
        self, name: str, args: Sequence[str], env: Mapping[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start ``python <args>`` with the current interpreter; output to ``<log_dir>/<name>.log``."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = (self.log_dir / f"{name}.log").open("ab")
        full_env = {**os.environ, **(env or {})}
        process = subprocess.Popen(  # noqa: S603
            [sys.executable, *args], stdout=log, stderr=subprocess.STDOUT, env=full_env
        )
        log.close()
        self.processes[name] = process
        return process

    def log_text(self, name: str) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def wait_for_line(self, name: str, needle: str, timeout: float = 20.0) -> None:
        """Wait until ``needle`` appears in the process's log; raise if it dies or times out."""
        deadline = time.monotonic() + timeout
        process = self.processes[name]
        while time.monotonic() < deadline:
            if needle in self.log_text(name):
                return
            if process.poll() is not None:
                raise RuntimeError(
                    f"{name} exited with {process.returncode}:\n{self.log_text(name)}"
                )
            time.sleep(0.05)
        raise TimeoutError(f"{name} did not print {needle!r} within {timeout}s")

    def signal(self, name: str, signum: int = signal.SIGTERM) -> None:
        process = self.processes[name]
        if process.poll() is None:
            process.send_signal(signum)

    def stop_all(self, timeout: float = 15.0) -> None:
        """SIGTERM everything still running, then SIGKILL what did not exit in ``timeout``."""
        self.stop(list(self.processes), timeout)

    def stop(self, names: Sequence[str], timeout: float = 15.0) -> None:
        """SIGTERM the named processes, then SIGKILL those that did not exit in ``timeout``."""
        chosen = [self.processes[name] for name in names]
        for process in chosen:
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + timeout
        for process in chosen:
            remaining = max(deadline - time.monotonic(), 0.1)
            try:
                process.wait(remaining)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def start_emulator(
    group: ProcessGroup, *, accounts: int = 300, seed: int = 42, extra: Sequence[str] = ()
) -> str:
    """Start ``python -m stripe_emulator`` on a free port; return its base URL once it listens."""
    port = free_port()
    args = ["-m", "stripe_emulator", "--host", "127.0.0.1", "--port", str(port)]
    args += ["--accounts", str(accounts), "--seed", str(seed), *extra]
    group.start("emulator", args)
    group.wait_for_line("emulator", "listening on")
    return f"http://127.0.0.1:{port}"


def worker_env(redis_url: str, stripe_base: str, **overrides: str) -> dict[str, str]:
    """Environment for a worker process pointed at the emulator.

    ``FCD_DEMO`` marks these as dev processes (no default-Redis warning) and ``FCD_METRICS_PORT``
    is 0, since many workers share this host; pass ``metrics_port=`` to serve one.
    """
    env = {
        "FCD_REDIS_URL": redis_url,
        "FCD_STRIPE_API_KEY": EMULATOR_KEY,
        "FCD_STRIPE_API_BASE": stripe_base,
        "FCD_LOG_FORMAT": "json",
        "FCD_DEMO": "1",
        "FCD_METRICS_PORT": "0",
    }
    env.update({f"FCD_{k.upper()}": v for k, v in overrides.items()})
    return env
