"""The Procfile runs: honcho starts its processes, as a Heroku-style platform would, against a
private Redis and the Stripe emulator; requests submitted over HTTP to the ``web:`` process are
finished by the ``worker:`` processes. A Procfile line that does not start, or starts the wrong
thing, fails this test.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from honcho.environ import parse_procfile

from devenv.redis_server import free_port
from tests.deploy.conftest import service_env
from tests.deploy.dockerfile import ROOT
from tests.emulator_admin import EmulatorAdmin
from tests.producer.http.conftest import BILLING

pytestmark = pytest.mark.process

PROCFILE = ROOT / "Procfile"
TERMINAL = {"disconnected", "already_disconnected", "not_found", "failed", "cancelled"}
STARTED = re.compile(r"(\S+) started \(pid=(\d+)\)")
LISTENING = re.compile(r"web\.1\s*\| .*listening on (http://\S+)")
METRICS_PORT = re.compile(
    r'(worker(?:-bulk)?\.\d+)\s*\| .*"port": (\d+), "event": "worker\.metrics_listening"'
)
WORKERS = 2


@dataclass
class Honcho:
    """``honcho start`` on the repository's Procfile, its output in ``log``."""

    process: subprocess.Popen[bytes]
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def pids(self) -> dict[str, int]:
        """The pid of each process honcho started (the session leader of that process)."""
        return {name: int(pid) for name, pid in STARTED.findall(self.text())}

    def alive(self) -> None:
        """Fail the test, with honcho's output, if honcho ended (a process of it stopped)."""
        if self.process.poll() is not None:
            pytest.fail(f"honcho exited with {self.process.returncode}:\n{self.text()}")

    async def web_url(self) -> str:
        """The intake's URL, from the web process's own "listening on" line."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            self.alive()
            found = LISTENING.search(self.text())
            if found:
                return found.group(1)
            await asyncio.sleep(0.1)
        pytest.fail(f"web did not say where it listens:\n{self.text()}")

    @contextlib.contextmanager
    def explain_refusals(self) -> Iterator[None]:
        """A refused connection mostly means a process stopped and honcho stopped the rest: then
        fail with honcho's output rather than the bare connection error."""
        try:
            yield
        except aiohttp.ClientConnectionError:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(30)
            self.alive()
            raise

    def metrics_ports(self) -> dict[str, int]:
        """Each worker process's metrics port, from its own ``worker.metrics_listening`` line."""
        return {name: int(port) for name, port in METRICS_PORT.findall(self.text())}

    def stop(self) -> None:
        """SIGTERM honcho (it stops its processes); anything left is killed by its session."""
        pids = self.pids()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for pid in pids.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)


@pytest.fixture
def honcho(tmp_path: Path, redis_url: str, namespace: str, emulator_url: str) -> Iterator[Honcho]:
    """The Procfile under honcho: web once, worker twice, worker-bulk once; stopped afterwards."""
    env = {
        **os.environ,
        **service_env(redis_url, namespace, emulator_url),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("PORT", None)
    empty_env_file = tmp_path / "no.env"
    empty_env_file.write_text("")
    log = tmp_path / "honcho.log"
    command = [
        sys.executable, "-m", "honcho", "start", "--no-colour",
        "-f", str(PROCFILE), "-d", str(ROOT), "-e", str(empty_env_file),
        "-p", str(free_port()), "-c", f"worker={WORKERS}",
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    running = Honcho(process, log)
    yield running
    running.stop()


def test_procfile_declares_the_platforms_processes() -> None:
    """web, worker and worker-bulk, each one line (honcho's own parser reads the file)."""
    procfile = parse_procfile(PROCFILE.read_text())
    assert set(procfile.processes) == {"web", "worker", "worker-bulk"}
    assert "$PORT" in procfile.processes["web"] or "${PORT" in procfile.processes["web"]


async def _wait_terminal(
    session: aiohttp.ClientSession, base: str, ids: list[str], honcho: Honcho
) -> dict[str, dict[str, Any]]:
    """Poll the intake for each request until all are terminal (bounded, never timed)."""
    done: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + 120
    while len(done) < len(ids):
        honcho.alive()
        assert time.monotonic() < deadline, f"not finished: {set(ids) - set(done)}\n{honcho.text()}"
        for request_id in set(ids) - set(done):
            async with session.get(
                f"{base}/v1/disconnect-requests/{request_id}", headers=BILLING
            ) as r:
                assert r.status == 200, await r.text()
                body = await r.json()
            if body["status"] in TERMINAL:
                done[request_id] = body
        await asyncio.sleep(0.2)
    return done


async def _worker_endpoints(session: aiohttp.ClientSession, honcho: Honcho) -> dict[str, str]:
    """/metrics of every worker process, each on its own port, once all three listen and have
    registered; /healthz and /readyz answer 200 there too. Bounded wait, never timed."""
    expected = {"worker.1", "worker.2", "worker-bulk.1"}
    deadline = time.monotonic() + 60
    while True:
        honcho.alive()
        ports = honcho.metrics_ports()
        metrics: dict[str, str] = {}
        if set(ports) == expected:
            for name, port in ports.items():
                for path in ("/healthz", "/readyz", "/metrics"):
                    async with session.get(f"http://127.0.0.1:{port}{path}") as response:
                        assert response.status == 200, (name, path, await response.text())
                        metrics[name] = await response.text()
            registered = 'fcd_workers{queue="urgent"} 2' in metrics["worker-bulk.1"]
            if registered and 'fcd_workers{queue="bulk"} 1' in metrics["worker.1"]:
                assert len(set(ports.values())) == len(ports), ports
                return metrics
        assert time.monotonic() < deadline, f"workers not all serving metrics:\n{honcho.text()}"
        await asyncio.sleep(0.2)


async def _submit_and_finish(
    honcho: Honcho, base: str, accounts: list[str]
) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Submit the accounts to web as one batch; wait until each request is terminal and every
    worker serves its metrics."""
    items = [
        {"account_id": a, "event_id": f"procfile-{a}", "reason": "user deleted"} for a in accounts
    ]
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{base}/v1/disconnect-requests/batch", json={"items": items}, headers=BILLING
        ) as response:
            assert response.status == 200, await response.text()
            results = (await response.json())["results"]
        ids = [result["result"]["request_ids"][0] for result in results]
        finished = await _wait_terminal(session, base, ids, honcho)
        metrics = await _worker_endpoints(session, honcho)
    return finished, metrics


async def test_requests_through_web_are_finished_by_the_procfile_workers(
    honcho: Honcho, process_admin: EmulatorAdmin
) -> None:
    """Submit accounts to ``web:`` over HTTP; every one ends ``disconnected`` at the emulator,
    done by a process that honcho started as ``worker.N`` (its session), not by web or bulk.
    Each worker process serves /healthz, /readyz and /metrics on the port the platform gave it
    (``$PORT``), and the fleet's metrics count both urgent workers and the bulk one."""
    base = await honcho.web_url()
    accounts = await process_admin.create_accounts(6)
    with honcho.explain_refusals():
        finished, metrics = await _submit_and_finish(honcho, base, accounts)
    pids = honcho.pids()
    assert {f"worker.{n}" for n in range(1, WORKERS + 1)} | {"web.1", "worker-bulk.1"} <= set(pids)
    worker_sessions = {pids[f"worker.{n}"] for n in range(1, WORKERS + 1)}
    for request_id, body in finished.items():
        assert body["status"] == "disconnected", body
        [done] = [
            h
            for h in body["history"]
            if h["event"] == "disconnect.status_changed" and h["to"] == "disconnected"
        ]
        pid = int(done["worker"].rsplit(":", 1)[1])
        assert os.getsid(pid) in worker_sessions, f"{request_id} done by pid {pid}"
    for account in accounts:
        assert (await process_admin.account(account))["status"] == "disconnected"
    assert "fcd_worker_heartbeat_timestamp_seconds" in metrics["worker.2"]
    honcho.alive()  # and nothing of the Procfile stopped meanwhile
