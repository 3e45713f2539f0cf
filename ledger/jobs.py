"""The job contract between the ledger (which enqueues) and the worker (which runs).

Jobs are JSON only (arq's default binary serializer is replaced): anyone who can write to Redis
must not be able to run code in a worker. The payload is deliberately tiny (the request id and a
schema version): everything else is read from the ledger when the job runs, so a job can never act
on stale data. Queued jobs outlive deploys: add fields only with defaults, never rename a job
function (:data:`DISCONNECT_JOB`, :data:`BATCH_JOB`, ``ledger.customer_models.CUSTOMER_JOB``)
without an alias.

A bulk submission enqueues one :data:`BATCH_JOB` per chunk of requests instead of one job each
(job id ``b_<random>``): every request of the chunk is recorded with that job id, and the job's
payload lists exactly those requests. The worker runs the same single-request core for each; a
request whose job id has changed since (a retry, a re-queue, a promotion to the urgent queue) is
skipped by the batch, like any stale job.

The ledger writes arq's job record itself (inside the same Lua script that records the status
change) so a request can never be recorded without its job, or a job exist for an unrecorded
request. The record is exactly what ``arq.connections.ArqRedis.enqueue_job`` would write with
:func:`serialize` as its ``job_serializer`` (:func:`job_record`).
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from pydantic import BaseModel, ConfigDict

DISCONNECT_JOB = "disconnect_account"
BATCH_JOB = "disconnect_batch"
BATCH_JOB_ID_PREFIX = "b_"
#: A running batch job refreshes its heartbeat (``P batch:<job id>:alive``) this often, with a
#: time to live of :data:`BATCH_HEARTBEAT_TTL_SECONDS`. arq keeps a dead worker's job in the
#: queue and its in-progress key for a day on bulk workers, so the reconciler trusts the
#: heartbeat instead: a held batch job without a live heartbeat is dead.
BATCH_HEARTBEAT_SECONDS = 15.0
BATCH_HEARTBEAT_TTL_SECONDS = 60.0
ARQ_JOB_KEY_PREFIX = "arq:job:"
ARQ_RESULT_KEY_PREFIX = "arq:result:"
ARQ_IN_PROGRESS_KEY_PREFIX = "arq:in-progress:"


class DisconnectJob(BaseModel):
    """Payload of a :data:`DISCONNECT_JOB` job."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    v: int = 1
    request_id: str


class BatchJob(BaseModel):
    """Payload of a :data:`BATCH_JOB` job: the requests recorded with this job id."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    v: int = 1
    request_ids: list[str]


def serialize(data: dict[str, Any]) -> bytes:
    """arq ``job_serializer``: compact JSON."""
    return json.dumps(data, separators=(",", ":"), default=str).encode()


def deserialize(raw: bytes) -> dict[str, Any]:
    """arq ``job_deserializer``: JSON only; anything else is rejected by ``json.loads``."""
    value = json.loads(raw)
    if not isinstance(value, dict):
        raise TypeError("arq job record must be a JSON object")
    return value


def job_record(
    function: str, payload: dict[str, Any], enqueue_time_ms: int | None = None
) -> dict[str, Any]:
    """arq's job record for ``function(payload)``, as an object (see the module docstring)."""
    et = enqueue_time_ms if enqueue_time_ms is not None else int(time.time() * 1000)
    return {"t": None, "f": function, "a": [payload], "k": {}, "et": et}


def batch_heartbeat_key(prefix: str, job_id: str) -> str:
    """The heartbeat of a running batch job; ``""`` for a job that is not a batch."""
    return f"{prefix}batch:{job_id}:alive" if is_batch_job_id(job_id) else ""


def job_id_for(request_id: str, sequence: int) -> str:
    """arq job id of the ``sequence``-th job for a request (unique, so re-queues never collide)."""
    return f"{request_id}.{sequence}"


def arq_job_record(request_id: str, enqueue_time_ms: int | None = None) -> bytes:
    """The bytes arq stores under ``arq:job:<id>`` for a disconnect job."""
    payload = DisconnectJob(request_id=request_id).model_dump()
    return serialize(job_record(DISCONNECT_JOB, payload, enqueue_time_ms))


def new_batch_job_id() -> str:
    """A fresh batch job id: ``b_`` and 16 random hex digits (short: every request stores it)."""
    return BATCH_JOB_ID_PREFIX + secrets.token_hex(8)


def is_batch_job_id(job_id: str | None) -> bool:
    """Whether ``job_id`` names a batch job (shared by many requests; never withdraw it for one)."""
    return bool(job_id) and str(job_id).startswith(BATCH_JOB_ID_PREFIX)


def batch_job_template(enqueue_time_ms: int | None = None) -> dict[str, Any]:
    """A batch job's record with an empty id list: the CREATE script fills in the ids of the
    requests it actually recorded (a merged submission is not in the batch)."""
    payload: dict[str, Any] = {"v": 1, "request_ids": []}
    return job_record(BATCH_JOB, payload, enqueue_time_ms)
