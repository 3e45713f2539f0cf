"""Stripe events: verified webhooks (and, later, the events catch-up) feed one durable inbox.

:mod:`.signature` checks ``Stripe-Signature``; :mod:`.inbox` de-duplicates events by id and keeps
them in a Redis stream until applied; :mod:`.apply` turns a
``financial_connections.account.disconnected`` event into ledger records. The intake receives
webhooks; whoever runs the consumer only needs this package and :mod:`ledger`.
"""
