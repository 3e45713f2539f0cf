"""The embedded archive: one SQLite file in WAL mode (``<FCD_ARCHIVE_DIR>/archive.sqlite3``).

Every call runs on one thread of the store's own (SQLite connections are not shared across
threads), so the event loop never waits on the disk. ``synchronous=FULL``: a batch ``put``
returns only once it is on disk, because the ledger deletes the requests from Redis right after.
The file (and its directory) is created by the first write; reads before that answer nothing.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

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

FILE_NAME = "archive.sqlite3"
_PAGE = 500
T = TypeVar("T")


class SqliteArchive:
    """:class:`archive.store.ArchiveStore` in one SQLite file under ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.path = Path(directory) / FILE_NAME
        self.location = f"sqlite:{self.path}"
        self._conn: sqlite3.Connection | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fcd-archive")
        self._upsert_request = upsert_sql("requests", REQUEST_COLUMNS, "request_id", "?")
        self._upsert_event = upsert_sql("events", EVENT_COLUMNS, "event_key", "?")

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # -- on the store's thread ----------------------------------------------------------------

    def _connection(self, create: bool) -> sqlite3.Connection | None:
        if self._conn is None:
            if not create and not self.path.exists():
                return None
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA busy_timeout=30000")
            _migrate(conn)
            self._conn = conn
        return self._conn

    def _put(self, requests: Sequence[ArchivedRequest]) -> None:
        conn = self._connection(create=True)
        assert conn is not None
        rows = [tuple(row_values(r).values()) for r in requests]
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(self._upsert_request, rows)
            conn.executemany(self._upsert_event, event_rows(requests))
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _select(self, where: str, params: Sequence[Any]) -> list[ArchivedRequest]:
        conn = self._connection(create=False)
        if conn is None:
            return []
        rows = conn.execute(f"SELECT * FROM requests WHERE {where}", params).fetchall()  # noqa: S608
        if not rows:
            return []
        ids = [row["request_id"] for row in rows]
        events: dict[str, list[ArchivedEvent]] = {}
        for start in range(0, len(ids), _PAGE):
            page = ids[start : start + _PAGE]
            marks = ",".join("?" for _ in page)
            for e in conn.execute(
                f"SELECT * FROM events WHERE request_id IN ({marks})",  # noqa: S608
                page,
            ):
                events.setdefault(e["request_id"], []).append(event_from_row(e))
        return [from_row(row, events.get(row["request_id"], ())) for row in rows]

    def _get_many(self, request_ids: Sequence[str]) -> dict[str, ArchivedRequest]:
        found: dict[str, ArchivedRequest] = {}
        for start in range(0, len(request_ids), _PAGE):
            page = list(request_ids[start : start + _PAGE])
            marks = ",".join("?" for _ in page)
            for r in self._select(f"request_id IN ({marks})", page):
                found[r.request_id] = r
        return found

    def _event(self, key: str) -> ArchivedEvent | None:
        conn = self._connection(create=False)
        if conn is None:
            return None
        row = conn.execute("SELECT * FROM events WHERE event_key = ?", (key,)).fetchone()
        return None if row is None else event_from_row(row)

    def _page_since(self, since: float, after: tuple[float, str]) -> list[ArchivedRequest]:
        return self._select(
            "last_ts >= ? AND (last_ts, request_id) > (?, ?) ORDER BY last_ts, request_id "
            f"LIMIT {_PAGE}",
            (since, *after),
        )

    def _counts(self) -> ArchiveCounts:
        conn = self._connection(create=False)
        if conn is None:
            return ArchiveCounts(0, 0, 0)
        requests, records = conn.execute(
            "SELECT count(*), coalesce(sum(json_array_length(history)), 0) FROM requests"
        ).fetchone()
        (events,) = conn.execute("SELECT count(*) FROM events").fetchone()
        return ArchiveCounts(int(requests), int(events), int(records))

    def _schema_version(self) -> int:
        conn = self._connection(create=False)
        return 0 if conn is None else _current_version(conn)

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- the interface ------------------------------------------------------------------------

    async def put(self, requests: Sequence[ArchivedRequest]) -> None:
        if requests:
            await self._run(self._put, list(requests))

    def _empty(self) -> bool:
        """Nothing archived yet (no file): reads answer at once, without a thread hop."""
        return self._conn is None and not self.path.exists()

    async def get_many(self, request_ids: Sequence[str]) -> dict[str, ArchivedRequest]:
        if self._empty():
            return {}
        return await self._run(self._get_many, list(request_ids))

    async def for_subject(self, subject: str) -> list[ArchivedRequest]:
        if self._empty():
            return []
        return await self._run(
            self._select, "subject = ? ORDER BY created_at, request_id", (subject,)
        )

    async def event(self, key: str) -> ArchivedEvent | None:
        if self._empty():
            return None
        return await self._run(self._event, key)

    async def requests_since(self, since: float) -> AsyncIterator[ArchivedRequest]:
        after: tuple[float, str] = (float("-inf"), "")
        while True:
            page = await self._run(self._page_since, since, after)
            for request in page:
                yield request
            if len(page) < _PAGE:
                return
            after = (page[-1].last_ts, page[-1].request_id)

    async def counts(self) -> ArchiveCounts:
        return await self._run(self._counts)

    async def schema_version(self) -> int:
        return await self._run(self._schema_version)

    async def close(self) -> None:
        await self._run(self._close)
        self._executor.shutdown(wait=True)


def _current_version(conn: sqlite3.Connection) -> int:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at REAL)"
    )
    (version,) = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()
    return int(version)


def _migrate(conn: sqlite3.Connection) -> None:
    """Apply every migration newer than the file's ``schema_version``, each in a transaction
    (``BEGIN IMMEDIATE``: one process at a time; the version is read again inside)."""
    for version, sql in migrations("sqlite"):
        conn.execute("BEGIN IMMEDIATE")
        try:
            if _current_version(conn) >= version:
                conn.execute("COMMIT")
                continue
            for statement in _statements(sql):
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                (version, time.time()),
            )
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


def _statements(sql: str) -> list[str]:
    """The statements of a migration file (``;``-separated; ``--`` comments dropped)."""
    lines = [line.split("--", 1)[0] for line in sql.splitlines()]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
