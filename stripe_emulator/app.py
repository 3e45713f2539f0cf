"""The aiohttp application factory and an in-process runner for tests.

`create_app(config)` builds the app; its state is `app[STATE]` (an `EmulatorState`). The webhook
dispatcher's HTTP session lives in a `cleanup_ctx`, and `on_shutdown` wakes hanging calls so a
stop never waits for a scripted 30 s hang.

`run_emulator(config)` serves the app on loopback for the duration of an `async with` block:

    async with run_emulator(EmulatorConfig(accounts=50)) as emulator:
        ...  # emulator.url, emulator.state
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiohttp import web

from stripe_emulator import admin, endpoints
from stripe_emulator.config import EmulatorConfig
from stripe_emulator.listener import Listener
from stripe_emulator.pipeline import STATE
from stripe_emulator.state import EmulatorState


def create_app(config: EmulatorConfig | None = None) -> web.Application:
    """A new emulator application with fresh state built from `config` (defaults if None)."""
    app = web.Application(client_max_size=1024 * 1024)
    state = EmulatorState(config or EmulatorConfig())
    app[STATE] = state
    endpoints.add_routes(app)
    admin.add_routes(app)

    async def webhook_session(_: web.Application) -> AsyncIterator[None]:
        await state.webhooks.start()
        yield
        await state.webhooks.close()

    async def wake_hanging_calls(_: web.Application) -> None:
        state.closing.set()

    app.cleanup_ctx.append(webhook_session)
    app.on_shutdown.append(wake_hanging_calls)
    return app


@dataclass(frozen=True)
class RunningEmulator:
    """An emulator serving on loopback: its base URL, app and state."""

    url: str
    host: str
    port: int
    app: web.Application

    @property
    def state(self) -> EmulatorState:
        """The live state, for tests to inspect or arrange."""
        return self.app[STATE]


@asynccontextmanager
async def run_emulator(
    config: EmulatorConfig | None = None, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[RunningEmulator]:
    """Serve a new emulator on `host:port` (0: a free port) until the block exits."""
    app = create_app(config)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        listener = Listener(runner, host, port)
        await listener.start()
        app[STATE].listener = listener
        bound_host, bound_port = _bound_address(runner)
        yield RunningEmulator(f"http://{bound_host}:{bound_port}", bound_host, bound_port, app)
    finally:
        await runner.cleanup()


def _bound_address(runner: web.AppRunner) -> tuple[str, int]:
    for address in runner.addresses:
        if isinstance(address, tuple):
            host, port = address[0], address[1]
            return (f"[{host}]" if ":" in host else host), int(port)
    raise RuntimeError("emulator is not listening on a TCP socket")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now (for launching the emulator as a process)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
