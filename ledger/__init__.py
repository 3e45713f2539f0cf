"""The ledger: what a disconnect request is and where its life is written down.

It holds the request model, statuses and their legal transitions, the Redis-backed store (the source
of truth; arq forgets jobs and results), the audit events and the shared Redis/logging settings.
Both ``producer`` and ``worker`` import it; it imports neither.
"""
