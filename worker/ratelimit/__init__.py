"""The distributed rate limiter every worker process shares, in Redis (issue #4).

Stripe allows about 25 requests/s per endpoint, 100 operations/s per account in live mode (25/s in
test mode) and about 20 requests in flight; other services use the same account. Every worker on
every host asks one limiter, kept in Redis, before each Stripe call::

    limiter = RateLimiter(redis, RateBudget.for_stripe(live_mode=True))
    async with account_lock(redis, account_id), limiter.slot("disconnect", priority="bulk"):
        ...  # the HTTP call
    # on a 429 carrying Stripe-Rate-Limited-Reason:
    await limiter.report_rate_limited("disconnect", reason)

Design. One Lua script decides each acquisition atomically, on Redis server time: it checks the
kill switch, the endpoint budget, the global budget and the in-flight cap together, and either
grants (advancing both GCRA arrival times and adding a lease) or says how long to wait, spending
nothing. GCRA with a bucket of ``burst`` requests (1 by default) spaces grants evenly, so no
sliding window, 1 s or 100 ms, sees more than ``rate x window + burst``. A caller whose slot is at
most ``reserve_ahead_seconds`` away books it and sleeps until it, holding no connection; callers
further back sleep for the returned time (plus a little jitter) and ask again. A refused caller
joins a queue (one per priority, first come first ranked) and sleeps longer the more callers are
ranked ahead of it, so a crowd wakes about one slot apart: about three script calls per grant,
whatever the crowd's size. Leases are a sorted set of ids scored by expiry, pruned by the same
script, so a dead worker's calls stop counting after ``lease_seconds``.

Priority (issue 13). Every call has a class: its priority (``urgent``: user deletions, a
customer listing for one; ``bulk``: sweeps, their listings, the events catch-up) and whether it
calls the budget's protected endpoint (``disconnect``, the write) or another one (a read). The
global budget serves them in this order: urgent disconnects, urgent reads, then bulk disconnects
and bulk reads taking turns while both wait (so a sweep's disconnects never starve the catch-up
or a listing, nor the other way round). A caller is refused, and waits, while a class served
before it has callers queued, whichever endpoint either is waiting for (simple, and it can only
favour the earlier class). On top of that, **no read ever delays an urgent disconnect**, not even
by the slot it was granted a moment before: a read never books a slot later than the disconnect
endpoint's next free slot (so it fills only the global budget's gaps before the next
disconnect), and an urgent disconnect may take the global slot one interval early (GCRA burst +1
for that class on the global budget alone), which covers a read granted just before it. The
price is at most one call more than ``rate x window + burst`` in a window of the global budget,
which Stripe's token buckets absorb. A queue entry expires shortly after its holder's expected
retry, so a dead waiter holds nobody back for long. The in-flight cap is shared by every class
(a read in flight holds one of the ``max_in_flight`` leases for its call's duration). Adaptive: ``report_rate_limited`` multiplies a shared factor on
every rate by 0.5 (once per cooldown, floored at ``min_rate_factor``), and the script adds
``recovery_per_second`` back for each second since, so every worker slows at once and recovers
without a background task. Fail closed: no permit without Redis; ``acquire`` retries with capped
backoff and logs ``limiter.redis_unavailable``. ``acquire(timeout=...)`` and task cancellation let
callers stop. A pause or a decrease stops or slows new grants at once; slots already booked (at
most ``reserve_ahead_seconds`` ahead) still go. All keys live on one Redis primary (not Redis
Cluster: the scripts touch keys outside one hash slot).

Log events (structlog, all ``warning``): ``limiter.redis_unavailable`` (an attempt failed; acquire
retries), ``limiter.release_failed`` (the lease will expire on its own), ``limiter.rate_limited``
(a 429 was reported; ``decreased`` says whether the shared factor moved), ``limiter.paused``,
``limiter.resumed``.

Why not a library. ``limits`` offers fixed/moving/sliding windows that answer allowed-or-not per
limit, one limit at a time, with no concurrency leases, no wait time and no adaptation.
``pyrate-limiter`` (leaky bucket, Redis backend) checks several rates of one bucket, but not an
endpoint bucket, a global bucket and a concurrency cap in one atomic step, and has no adaptive
factor or priority. ``redis-rate-limiters`` has a Redis semaphore and a token bucket as separate
context managers: taking both is two non-atomic steps, and it neither adapts nor prioritises.
None meets every point (shared, smooth, atomic multi-budget plus leases, fail closed, adaptive,
async), and the whole policy fits in one short script, so it is written here.

Layout: :mod:`.scripts` (the Lua), :mod:`.budget` (value types), :mod:`.limiter`
(:class:`RateLimiter`), :mod:`control.pause` (the ``fcd:paused`` kill switch, shared with the CLI), :mod:`.locks` (one
call per account), :mod:`.errors` (the exception tree).
"""

from control.pause import PAUSE_KEY, PauseState, get_pause, pause, resume
from worker.ratelimit.budget import (
    STRIPE_ENDPOINTS,
    LimiterSnapshot,
    Permit,
    Priority,
    RateBudget,
)
from worker.ratelimit.errors import (
    AccountBusy,
    LimiterError,
    LimiterPaused,
    LimiterTimeout,
    UnknownEndpoint,
)
from worker.ratelimit.limiter import RateLimiter
from worker.ratelimit.locks import ACCOUNT_LOCK_PREFIX, AccountLock, account_lock

__all__ = [
    "ACCOUNT_LOCK_PREFIX",
    "PAUSE_KEY",
    "STRIPE_ENDPOINTS",
    "AccountBusy",
    "AccountLock",
    "LimiterError",
    "LimiterPaused",
    "LimiterSnapshot",
    "LimiterTimeout",
    "PauseState",
    "Permit",
    "Priority",
    "RateBudget",
    "RateLimiter",
    "UnknownEndpoint",
    "account_lock",
    "get_pause",
    "pause",
    "resume",
]
