"""Cleanup that a cancellation cannot stop: :func:`run_detached`.

Every Redis call the service makes while it cleans up after a cancellation (give a claimed
request back, release a lock or a limiter lease, finish a sweep run, publish an audit record
whose script already ran) goes through :func:`run_detached`, so it runs in a task of its own.

Why a task of its own, and not just ``await`` in the ``except CancelledError`` or ``finally``
block: a task stays *cancelling* (``Task.cancelling() > 0``) until its cancellation is
uncancelled, and on Python 3.11.0-3.11.2 an expired ``asyncio.timeout`` inside such a task
re-raises ``CancelledError`` instead of ``TimeoutError`` (CPython gh-102780, fixed in 3.11.3
by python/cpython#102815). redis-py checks each pooled connection with a zero timeout before
every command (``can_read_destructive``), so there every Redis call made from a cancelled
task's cleanup is itself cancelled: a cancelled limiter wait leaked its lease, a cancelled
attempt left the account lock held. redis-py takes ``asyncio.timeout`` only from 3.11.3
(redis/redis-py#2633, #2659), but the ``async-timeout`` 5 it uses before that is a subclass of
``asyncio.Timeout`` on 3.11, so it has the same bug. A fresh task has no pending cancellation,
so the same call works on every 3.11 (and newer Pythons lose nothing by it).

Contract: ``await run_detached(work)`` returns what ``work`` returns, or raises what it raises,
exactly like ``await work``, unless the caller is cancelled meanwhile. Then ``work`` is not
cancelled: the caller keeps waiting for it (however often it is cancelled again), and raises
its :class:`asyncio.CancelledError` once ``work`` has finished; an error of ``work`` is then
logged, the cancellation taking precedence. A second cancellation does not cut the cleanup
short, so ``work`` should bound its own time where a hang is possible (the limiter's does); a
shutdown that cannot wait is ended by the process manager, and the reconciler repairs the rest.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

import structlog

T = TypeVar("T")

_log = structlog.get_logger(__name__)


async def run_detached(work: Awaitable[T]) -> T:
    """Run ``work`` in a fresh task and wait for it even if cancelled (see the module docstring)."""
    task = asyncio.ensure_future(work)
    cancelled: asyncio.CancelledError | None = None
    while not task.done():
        try:
            await asyncio.wait((task,))
        except asyncio.CancelledError as exc:
            cancelled = exc  # honoured once the work has finished
    if cancelled is None:
        return task.result()
    if not task.cancelled() and task.exception() is not None:
        _log.warning("cleanup.failed_while_cancelled", error=repr(task.exception()))
    raise cancelled
