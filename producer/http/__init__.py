"""The HTTP intake for other services (aiohttp): ``create_app(settings)`` in :mod:`.app`.

Handlers are thin: parse (and authenticate), call a core (:mod:`producer.intake`,
:mod:`events`, the ledger), render JSON. Every error is
``{"error": {"code", "message", "field"}}`` (:mod:`.errors`).
"""
