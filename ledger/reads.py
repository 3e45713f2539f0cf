"""Reading the ledger: a request, its history, an account's requests and history, the indexes.

Nothing here writes. Reads that combine several keys run in one MULTI, so a script that changes
those keys meanwhile (e.g. writing a request's first history list) is seen wholly or not at all.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ledger.keys import LedgerKeys
from ledger.models import ACCOUNT_ID_RE, DisconnectRequest, RequestNotFound, RequestStatus
from ledger.records import (
    CREATION_FIELDS,
    IMPLIED,
    creation_record,
    expand_record,
    implied_fields,
    text,
)


class LedgerReads(LedgerKeys):
    """The ledger's read side; :class:`ledger.store.Ledger` adds the writes."""

    async def get(self, request_id: str) -> DisconnectRequest:
        raw = await self.redis.hgetall(self.request_key(request_id))  # type: ignore[misc]
        if not raw:
            raise RequestNotFound(request_id)
        decoded = {text(k): text(v) for k, v in raw.items()}
        return DisconnectRequest.from_redis(decoded, request_id)

    async def history(self, request_id: str) -> list[dict[str, Any]]:
        """The request's audit records, oldest first, every key of the audit contract present.

        Until its second record a request has no history list; its creation record is rebuilt
        from the hash (see :mod:`ledger.records`), and put first whenever the hash still holds it.
        """
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.lrange(self.history_key(request_id), 0, -1)
            pipe.hmget(self.request_key(request_id), [*IMPLIED, *CREATION_FIELDS])
            raw, own = await pipe.execute()
        implied = implied_fields(request_id, own[: len(IMPLIED)])
        stored = [json.loads(item) for item in raw]
        job_id, created_by, created_ts = own[len(IMPLIED) :]
        if created_ts is not None:  # not materialised yet (or listed by an older version)
            job = None if job_id is None else text(job_id)
            stored = [creation_record(job, text(created_by or b""), text(created_ts)), *stored]
        return [expand_record({**implied, **record}) for record in stored]

    async def account_history(self, account_id: str) -> list[dict[str, Any]]:
        """Everything recorded about an account: its own notes and every request's history,
        in time order."""
        raw = await self.redis.lrange(self.account_history_key(account_id), 0, -1)  # type: ignore[misc]
        records = [expand_record(json.loads(item)) for item in raw]
        for request_id in await self.requests_for_account(account_id):
            records += await self.history(request_id)
        return sorted(records, key=lambda record: str(record["ts"]))

    async def requests_for_account(self, account_id: str) -> list[str]:
        """Every request id ever made for the account, oldest first: the finished ones (indexed
        when they end) and the active one, if any."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zrange(self.account_requests_key(account_id), 0, -1, withscores=True)
            pipe.get(self.active_key(account_id))
            finished, active = await pipe.execute()
        created = {text(member): float(score) for member, score in finished}
        if active is not None and text(active) not in created:
            raw = await self.redis.hget(self.request_key(text(active)), "created_at")  # type: ignore[misc]
            if raw is not None:
                created[text(active)] = float(raw)
        return sorted(created, key=lambda request_id: (created[request_id], request_id))

    async def resolve(self, ref: str) -> DisconnectRequest:
        """A request by id, or an account's active (else most recent) request by ``fca_`` id."""
        if not ACCOUNT_ID_RE.match(ref):
            return await self.get(ref)
        active = await self.redis.get(self.active_key(ref))
        if active is not None:
            return await self.get(text(active))
        ids = await self.requests_for_account(ref)
        if not ids:
            raise RequestNotFound(ref)
        return await self.get(ids[-1])

    async def count_by_status(self) -> dict[RequestStatus, int]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for status in RequestStatus:
                pipe.zcard(self.status_key(status))
            counts: Sequence[int] = await pipe.execute()
        return dict(zip(RequestStatus, counts, strict=True))

    async def ids_in_status(self, status: RequestStatus, limit: int = 1000) -> list[str]:
        raw = await self.redis.zrange(self.status_key(status), 0, limit - 1)
        return [text(item) for item in raw]
