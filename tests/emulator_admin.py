"""A tiny client for the emulator's admin API (``/_emulator/...``), used by tests and the demo."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiohttp


@dataclass
class EmulatorAdmin:
    base: str
    session: aiohttp.ClientSession

    async def _json(self, method: str, path: str, body: Any = None) -> Any:
        async with self.session.request(method, self.base + path, json=body) as resp:
            resp.raise_for_status()
            return await resp.json()

    async def create_accounts(
        self, count: int = 1, status: str = "active", stripe_account: str | None = None
    ) -> list[str]:
        body: dict[str, Any] = {"count": count, "status": status}
        if stripe_account is not None:
            body["stripe_account"] = stripe_account  # on that connected account
        created = await self._json("POST", "/_emulator/accounts", body)
        return [a["id"] for a in created["data"]]

    async def account(self, account_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._json("GET", f"/_emulator/accounts/{account_id}")
        return result

    async def script(self, account_id: str, *responses: dict[str, Any]) -> None:
        body = {"account_id": account_id, "responses": list(responses)}
        await self._json("POST", "/_emulator/script", body)

    async def connect_accounts(self, count: int = 1) -> list[str]:
        """Connect ``count`` new accounts to the platform (Connect); their ids."""
        created = await self._json("POST", "/_emulator/connected-accounts", {"count": count})
        return [a["id"] for a in created["data"]]

    async def get(self, path: str) -> Any:
        """GET an admin path; the ``data`` list when the answer has one."""
        body = await self._json("GET", path)
        return body["data"] if isinstance(body, dict) and "data" in body else body

    async def post(self, path: str, body: Any) -> Any:
        return await self._json("POST", path, body)

    async def requests(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = (await self._json("GET", "/_emulator/requests"))["data"]
        return result

    async def configure(self, **update: Any) -> None:
        await self._json("POST", "/_emulator/config", update)
