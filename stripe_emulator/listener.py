"""The emulator's listening socket, which the admin API can close for a while.

`POST /_emulator/refuse-connections {"seconds": N}` makes the emulator behave like an API host
that went away: the listening socket is closed (a new connection is refused: `ECONNREFUSED` on
loopback) and every open connection is aborted (a pooled keep-alive connection fails on its
next use), then it listens again on the same address after N seconds. The admin call is
answered first; the refusal starts a moment later (`REFUSE_DELAY_SECONDS`). Admin calls are
refused too during the window: the harness that asked knows when it ends.
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

REFUSE_DELAY_SECONDS = 0.05


class Listener:
    """One TCP site of an `AppRunner` that can be closed and reopened on the same address."""

    def __init__(self, runner: web.AppRunner, host: str, port: int, backlog: int = 128) -> None:
        self._runner = runner
        self._host = host
        self._port = port
        self._backlog = backlog
        self._site: web.TCPSite | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.refusing_until: float | None = None
        self.windows = 0

    async def start(self) -> None:
        """Listen on the address (again)."""
        site = web.TCPSite(
            self._runner, self._host, self._port, reuse_address=True, backlog=self._backlog
        )
        await site.start()
        if self._port == 0:  # reopen later on the port the system chose, not on another one
            for address in self._runner.addresses:
                if isinstance(address, tuple):
                    self._port = int(address[1])
                    break
        self._site = site
        self.refusing_until = None

    def refuse_for(self, seconds: float) -> float:
        """Start a refusal window of `seconds` shortly; answers when it ends (unix s). While a
        window runs, asking again changes nothing and answers its end."""
        until = time.time() + REFUSE_DELAY_SECONDS + seconds
        if self.refusing_until is not None:
            return self.refusing_until
        self.refusing_until = until
        self.windows += 1
        task = asyncio.get_running_loop().create_task(self._window())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return until

    async def _window(self) -> None:
        await asyncio.sleep(REFUSE_DELAY_SECONDS)
        if self._site is not None:
            await self._site.stop()
            self._site = None
        server = self._runner.server
        for handler in server.connections if server is not None else []:
            if handler.transport is not None:
                handler.transport.abort()
        await asyncio.sleep(max((self.refusing_until or 0.0) - time.time(), 0.0))
        await self.start()
