"""The job contract between the ledger (which enqueues) and the worker (which runs).

Jobs are JSON, never pickle: anyone who can write to Redis must not be able to run code in a worker.
The payload is deliberately tiny (the request id and a schema version): everything else is read
from the ledger when the job runs, so a job can never act on stale data. Queued jobs outlive
deploys: add fields only with defaults, never rename :data:`DISCONNECT_JOB` without an alias.

The ledger writes arq's job record itself (inside the same Lua script that records the status
change) so a request can never be recorded without its job, or a job exist for an unrecorded
request. The bytes are exactly what ``arq.connections.ArqRedis.enqueue_job`` would write with
:func:`serialize` as its ``job_serializer``.
"""

from __future__ import annotations

import json
import time
from typing import Any

from pydantic import BaseModel, ConfigDict

DISCONNECT_JOB = "disconnect_account"
ARQ_JOB_KEY_PREFIX = "arq:job:"
ARQ_RESULT_KEY_PREFIX = "arq:result:"
ARQ_IN_PROGRESS_KEY_PREFIX = "arq:in-progress:"


class DisconnectJob(BaseModel):
    """Payload of a :data:`DISCONNECT_JOB` job."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    v: int = 1
    request_id: str


def serialize(data: dict[str, Any]) -> bytes:
    """arq ``job_serializer``: compact JSON."""
    return json.dumps(data, separators=(",", ":"), default=str).encode()


def deserialize(raw: bytes) -> dict[str, Any]:
    """arq ``job_deserializer``: JSON only; anything else is rejected by ``json.loads``."""
    value = json.loads(raw)
    if not isinstance(value, dict):
        raise TypeError("arq job record must be a JSON object")
    return value


def job_id_for(request_id: str, sequence: int) -> str:
    """arq job id of the ``sequence``-th job for a request (unique, so re-queues never collide)."""
    return f"{request_id}.{sequence}"


def arq_job_record(request_id: str, enqueue_time_ms: int | None = None) -> bytes:
    """The bytes arq stores under ``arq:job:<id>`` for a disconnect job."""
    payload = DisconnectJob(request_id=request_id).model_dump()
    et = enqueue_time_ms if enqueue_time_ms is not None else int(time.time() * 1000)
    return serialize({"t": None, "f": DISCONNECT_JOB, "a": [payload], "k": {}, "et": et})
