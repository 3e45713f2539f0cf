"""What on-call reads and flips for the whole fleet: the kill switch, fleet metrics, the overview.

Imported by both sides (the CLI and intake pause, resume and read; the workers' limiter honours
the pause and their counters feed the metrics). It imports :mod:`ledger` and nothing else of ours.
"""
