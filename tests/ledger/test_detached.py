"""``run_detached``: cleanup after a cancellation runs to its end, Redis calls included, on every
Python 3.11 (on 3.11.0-3.11.2 a Redis call awaited from a cancelled task itself is cancelled)."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis
from structlog.testing import capture_logs

from ledger.detached import run_detached


async def _settle() -> None:
    """Let every ready task run a few steps (no wall clock involved)."""
    for _ in range(10):
        await asyncio.sleep(0)


async def test_a_cancelled_tasks_cleanup_reaches_redis(redis: Redis, namespace: str) -> None:
    """A task cancelled mid-wait writes to Redis from its ``except CancelledError`` block through
    ``run_detached``, then ends cancelled. (Awaited directly, the same write is cancelled on
    Python 3.11.0-3.11.2: redis-py's zero timeout on each pooled connection.)"""
    key = f"{namespace}cleaned"
    waiting = asyncio.Event()

    async def holder() -> None:
        try:
            waiting.set()
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            assert asyncio.current_task().cancelling() == 1  # type: ignore[union-attr]
            await run_detached(redis.set(key, b"1"))
            raise

    task = asyncio.create_task(holder())
    await waiting.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await redis.get(key) == b"1"


async def test_a_second_cancellation_waits_for_the_cleanup() -> None:
    """Cancelled again while its cleanup runs, the caller neither cancels the cleanup nor stops
    waiting for it; it raises ``CancelledError`` once the cleanup has finished."""
    release = asyncio.Event()
    finished: list[str] = []

    async def cleanup() -> str:
        await release.wait()
        finished.append("cleanup")
        return "done"

    caller = asyncio.create_task(run_detached(cleanup()))
    await _settle()
    for _ in range(2):
        caller.cancel()
        await _settle()
        assert not caller.done()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert finished == ["cleanup"]


async def test_without_a_cancellation_it_is_a_plain_await() -> None:
    """Not cancelled, ``run_detached`` returns what the work returns and raises what it raises."""

    async def answer() -> int:
        return 42

    async def broken() -> None:
        raise LookupError("gone")

    assert await run_detached(answer()) == 42
    with pytest.raises(LookupError, match="gone"):
        await run_detached(broken())


async def test_an_error_after_a_cancellation_is_logged_and_the_cancellation_wins() -> None:
    """Work that fails while its caller was cancelled: the caller raises ``CancelledError``
    (what it was asked to do), and the work's error is logged, not lost."""
    release = asyncio.Event()

    async def broken() -> None:
        await release.wait()
        raise LookupError("gone")

    caller = asyncio.create_task(run_detached(broken()))
    await _settle()
    caller.cancel()
    await _settle()
    with capture_logs() as logs:
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await caller
    assert [(e["event"], e["error"]) for e in logs] == [
        ("cleanup.failed_while_cancelled", "LookupError('gone')")
    ]
