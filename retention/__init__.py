"""Retention sweeps: policies (TOML), selection, the blast-radius guard, sweep runs.

Shared by the producer (``fcd sweep``) and the worker (scheduled sweeps); neither side's code is
needed here. Stripe is reached only through a page fetcher the caller supplies
(:mod:`retention.sources`). Modules: :mod:`.policy`, :mod:`.schedule`, :mod:`.select`,
:mod:`.sources`, :mod:`.runs`, :mod:`.sweep`; bulk submission is :mod:`ledger.bulk`.
"""
