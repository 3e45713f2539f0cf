"""The limiter's atomic steps: Lua scripts in ``worker/ratelimit/lua/``, run on the Redis server.

All times are Redis server time (``TIME``) in microseconds, so worker clock skew cannot bend the
budget. Numbers are passed to ``redis.call`` as Lua numbers (Redis formats them without losing
precision) and returned as integers (microseconds) or as formatted strings (the rate factor).

Key layout, under the limiter's prefix ``P`` (``fcd:rl:`` by default):

======================  ======  =================================================================
``P tat:ep:<name>``     string  GCRA theoretical arrival time of the endpoint budget
``P tat:global``        string  GCRA theoretical arrival time of the global budget
``P leases``            zset    lease id -> expiry; a member is a call in flight (or about to be)
``P adaptive``          hash    ``factor`` set by the last decrease and ``at``, when it was made
``P wait:urgent``       zset    refused urgent caller of the protected endpoint -> when it joined
``P wait:urgent:read``  zset    refused urgent caller of any other endpoint (a read)
``P wait:bulk``         zset    refused bulk caller of the protected endpoint
``P wait:bulk:read``    zset    refused bulk caller of any other endpoint
``P wait:expiry``       zset    refused caller id -> when to forget it (it died or gave up)
``P turn:bulk``         string  ``protected`` or ``read``: the bulk class of the last bulk grant
``P stats``             hash    ``grants``, ``waits``, ``wait_us``, ``rate_limited`` counters
``fcd:paused``          string  the kill switch (see :mod:`control.pause`)
======================  ======  =================================================================

Every key but ``stats`` expires on its own once idle (``adaptive`` once the factor has recovered:
with ``recovery_per_second`` 0 it never does, and stays one hash of two fields); ``stats`` is a
fixed set of four counters. ``tests/test_key_families.py`` holds every key to its bound.
The scripts: ``acquire.lua``, ``report_rate_limited.lua``, ``snapshot.lua`` (``prelude/limiter.lua``
holds their shared helpers).
"""

from __future__ import annotations

from typing import Final

# Status codes returned by acquire.lua.
GRANTED: Final = 0
RATE_WAIT: Final = 1
BUSY_WAIT: Final = 2
YIELD: Final = 3  # a class served before this caller's has callers waiting
PAUSED: Final = 4
