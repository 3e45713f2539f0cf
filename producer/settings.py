"""Settings of producer-side processes: the CLI, the Python API and (later) the HTTP intake."""

from __future__ import annotations

from ledger.settings import BaseServiceSettings


class ProducerSettings(BaseServiceSettings):
    """Producer-side settings; today exactly the shared ones."""
