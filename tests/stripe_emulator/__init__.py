"""Tests of the Stripe emulator: data, endpoints, admin API, limits, faults, webhooks, shapes."""
