"""The archive for fleets: PostgreSQL (``FCD_ARCHIVE_DSN=postgresql://…``), through psycopg 3.

One connection per process, opened on first use, its calls serialised by a lock (the archive
pass writes batches; reads are single lookups). The schema is migrated on open under a
transaction-scoped advisory lock, so workers starting together apply each migration once.
Errors never carry the DSN (it may hold a password): :attr:`location` is host, port and
database only.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg.rows import dict_row

from archive.store import (
    EVENT_COLUMNS,
    REQUEST_COLUMNS,
    ArchiveCounts,
    ArchivedEvent,
    ArchivedRequest,
    event_from_row,
    event_rows,
    from_row,
    migrations,
    row_values,
    upsert_sql,
)

#: pg_advisory_xact_lock key of the migration step ("fcd-arch" as an integer).
_MIGRATION_LOCK = 0x6663_642D_6172_6368
_PAGE = 500
_JSON_COLUMNS = {"fields", "history", "children"}


class ArchiveUnavailable(RuntimeError):
    """The PostgreSQL archive could not be reached (the message names no secret)."""


class PostgresArchive:
    """:class:`archive.store.ArchiveStore` in a PostgreSQL database."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        parts = urlsplit(dsn)
        self.location = (
            f"postgresql://{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path}"
        )
        self._conn: psycopg.AsyncConnection[dict[str, Any]] | None = None
        self._lock = asyncio.Lock()
        casts = dict.fromkeys(_JSON_COLUMNS, "::jsonb")
        self._upsert_request = upsert_sql("requests", REQUEST_COLUMNS, "request_id", "%s", casts)
        self._upsert_event = upsert_sql("events", EVENT_COLUMNS, "event_key", "%s")

    async def _connection(self) -> psycopg.AsyncConnection[dict[str, Any]]:
        if self._conn is None or self._conn.closed:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self._dsn, row_factory=dict_row, autocommit=True
                )
            except psycopg.Error as exc:
                raise ArchiveUnavailable(
                    f"archive {self.location} unreachable ({type(exc).__name__})"
                ) from None
            await _migrate(conn)
            self._conn = conn
        return self._conn

    async def put(self, requests: Sequence[ArchivedRequest]) -> None:
        if not requests:
            return
        rows = [tuple(row_values(r).values()) for r in requests]
        async with self._lock:
            conn = await self._connection()
            async with conn.transaction(), conn.cursor() as cur:
                await cur.executemany(self._upsert_request, rows)
                events = event_rows(requests)
                if events:
                    await cur.executemany(self._upsert_event, events)

    async def _select(self, where: str, params: Sequence[Any]) -> list[ArchivedRequest]:
        async with self._lock:
            conn = await self._connection()
            query = f"SELECT * FROM requests WHERE {where}"  # noqa: S608 (our own clauses)
            rows = await (await conn.execute(query.encode(), params)).fetchall()
            ids = [row["request_id"] for row in rows]
            events: dict[str, list[ArchivedEvent]] = {}
            if ids:
                cur = await conn.execute("SELECT * FROM events WHERE request_id = ANY(%s)", (ids,))
                for e in await cur.fetchall():
                    events.setdefault(e["request_id"], []).append(event_from_row(e))
        return [from_row(row, events.get(row["request_id"], ())) for row in rows]

    async def get_many(self, request_ids: Sequence[str]) -> dict[str, ArchivedRequest]:
        if not request_ids:
            return {}
        found = await self._select("request_id = ANY(%s)", (list(request_ids),))
        return {r.request_id: r for r in found}

    async def for_subject(self, subject: str) -> list[ArchivedRequest]:
        return await self._select("subject = %s ORDER BY created_at, request_id", (subject,))

    async def event(self, key: str) -> ArchivedEvent | None:
        async with self._lock:
            conn = await self._connection()
            cur = await conn.execute("SELECT * FROM events WHERE event_key = %s", (key,))
            row = await cur.fetchone()
        return None if row is None else event_from_row(row)

    async def requests_since(self, since: float) -> AsyncIterator[ArchivedRequest]:
        after: tuple[float, str] = (float("-inf"), "")
        while True:
            page = await self._select(
                "last_ts >= %s AND (last_ts, request_id) > (%s, %s) "
                f"ORDER BY last_ts, request_id LIMIT {_PAGE}",
                (since, *after),
            )
            for request in page:
                yield request
            if len(page) < _PAGE:
                return
            after = (page[-1].last_ts, page[-1].request_id)

    async def counts(self) -> ArchiveCounts:
        async with self._lock:
            conn = await self._connection()
            cur = await conn.execute(
                "SELECT count(*) AS n, coalesce(sum(jsonb_array_length(history)), 0) AS records "
                "FROM requests"
            )
            row = await cur.fetchone()
            cur = await conn.execute("SELECT count(*) AS n FROM events")
            events = await cur.fetchone()
        assert row is not None and events is not None
        return ArchiveCounts(int(row["n"]), int(events["n"]), int(row["records"]))

    async def schema_version(self) -> int:
        async with self._lock:
            conn = await self._connection()
            return await _current_version(conn)

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None


async def _current_version(conn: psycopg.AsyncConnection[dict[str, Any]]) -> int:
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_version "
        "(version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION)"
    )
    cur = await conn.execute("SELECT coalesce(max(version), 0) AS v FROM schema_version")
    row = await cur.fetchone()
    assert row is not None
    return int(row["v"])


async def _migrate(conn: psycopg.AsyncConnection[dict[str, Any]]) -> None:
    """Apply every migration newer than ``schema_version``, each in a transaction holding the
    migration advisory lock (the version is read again under it)."""
    for version, sql in migrations("postgresql"):
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            if await _current_version(conn) >= version:
                continue
            await conn.execute(sql.encode())
            await conn.execute(
                "INSERT INTO schema_version (version, applied_at) VALUES (%s, %s)",
                (version, time.time()),
            )
