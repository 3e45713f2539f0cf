"""Where the ledger keeps account requests: key names and queue choice, shared by writes and reads.

What each key holds is documented in :mod:`ledger.store`; the scripts are in ``ledger/lua/``.
"""

from __future__ import annotations

from redis.asyncio import Redis

from ledger.models import DisconnectRequest, RequestPriority, RequestSource, priority_for


class LedgerKeys:
    """Account-level key names under one prefix, and which arq queue a request's jobs go to."""

    redis: Redis
    prefix: str
    queue_name: str
    bulk_queue_name: str

    def queue_for(self, source: RequestSource) -> str:
        """The queue a new request from ``source`` starts in (see :func:`priority_for`)."""
        return self.queue_of_priority(priority_for(source))

    def queue_of(self, request: DisconnectRequest) -> str:
        """The queue of every later enqueue of ``request``: its stored priority decides."""
        return self.queue_of_priority(request.priority)

    def queue_of_priority(self, priority: RequestPriority) -> str:
        return self.bulk_queue_name if priority == RequestPriority.BULK else self.queue_name

    @property
    def queue_names(self) -> tuple[str, ...]:
        """Every arq queue this ledger enqueues to (one if the bulk queue is the urgent one)."""
        return tuple(dict.fromkeys((self.queue_name, self.bulk_queue_name)))

    def active_key(self, account_id: str) -> str:
        return f"{self.prefix}acct:{account_id}:active"

    def account_requests_key(self, account_id: str) -> str:
        """The account's finished requests (written by the terminal transition)."""
        return f"{self.prefix}acct:{account_id}:reqs"

    def account_history_key(self, account_id: str) -> str:
        return f"{self.prefix}acct:{account_id}:hist"

    @property
    def pause_key(self) -> str:
        """The kill switch (see :mod:`control.pause`): ``fcd:paused`` with the default prefix."""
        return f"{self.prefix}paused"
