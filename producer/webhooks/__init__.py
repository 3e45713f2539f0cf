"""Stripe webhooks: verify the signature, keep the event durably, apply it in the background.

:mod:`.signature` checks ``Stripe-Signature``; :mod:`.inbox` de-duplicates events by id and keeps
them in a Redis stream until applied; :mod:`.apply` turns a
``financial_connections.account.disconnected`` event into ledger records.
"""
