"""The archive store's contract, on both backends for real (SQLite file, private PostgreSQL)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from archive import ArchivedEvent, ArchivedRequest, ArchiveStore, open_archive
from archive.sqlite import FILE_NAME, SqliteArchive
from archive.store import get_one, iso_seconds, migrations


def archived(request_id: str, *, subject: str = "fca_1", status: str = "disconnected",
             ts: str = "2026-01-02T03:04:05.000000Z", events: int = 1) -> ArchivedRequest:  # fmt: skip
    history: list[dict[str, Any]] = [
        {"event": "disconnect.status_changed", "request_id": request_id, "from": None,
         "to": "queued", "ts": "2026-01-01T00:00:00.000000Z"},
        {"event": "disconnect.status_changed", "request_id": request_id, "from": "queued",
         "to": status, "ts": ts},
    ]  # fmt: skip
    return ArchivedRequest(
        request_id=request_id,
        kind="account",
        subject=subject,
        status=status,
        created_at=1_767_225_600.0,
        updated_at=1_767_323_045.0,
        fields={"account_id": subject, "status": status, "source": "deletion_event"},
        history_json=json.dumps(history),
        last_ts=iso_seconds(ts),
        archived_at=1_770_000_000.0,
        events=tuple(
            ArchivedEvent(f"svc:ev{request_id}{n}", request_id, "h" * 64, '{"r":1}', "1.5")
            for n in range(events)
        ),
    )


async def test_put_is_an_upsert_by_request_id(archive_store: ArchiveStore) -> None:
    """Writing the same request twice leaves one row (the newer), and one row per event id."""
    await archive_store.put([archived("dr_a"), archived("dr_b")])
    await archive_store.put([archived("dr_a", status="failed")])
    counts = await archive_store.counts()
    assert (counts.requests, counts.events, counts.records) == (2, 2, 4)
    found = await get_one(archive_store, "dr_a")
    assert found is not None and found.status == "failed"
    assert found.records == archived("dr_a", status="failed").records
    assert found.fields["source"] == "deletion_event"
    assert [e.key for e in found.events] == ["svc:evdr_a0"]


async def test_reads_by_id_subject_and_event(archive_store: ArchiveStore) -> None:
    await archive_store.put([archived("dr_a"), archived("dr_b", subject="fca_2"), archived("dr_c")])
    assert sorted(await archive_store.get_many(["dr_a", "dr_b", "dr_zz"])) == ["dr_a", "dr_b"]
    assert [r.request_id for r in await archive_store.for_subject("fca_1")] == ["dr_a", "dr_c"]
    event = await archive_store.event("svc:evdr_b0")
    assert event == ArchivedEvent("svc:evdr_b0", "dr_b", "h" * 64, '{"r":1}', "1.5")
    assert await archive_store.event("svc:unknown") is None
    assert await get_one(archive_store, "dr_zz") is None


async def test_requests_since_pages_in_order_of_the_newest_record(
    archive_store: ArchiveStore,
) -> None:
    """Only requests whose newest record is at or after ``since``, oldest first, over pages."""
    await archive_store.put(
        [
            archived(f"dr_{n:04d}", ts=f"2026-02-{n % 28 + 1:02d}T00:00:00.000000Z")
            for n in range(600)
        ]
    )
    since = iso_seconds("2026-02-15T00:00:00Z")
    found = [r async for r in archive_store.requests_since(since)]
    assert len(found) == sum(1 for n in range(600) if n % 28 + 1 >= 15)
    assert [r.last_ts for r in found] == sorted(r.last_ts for r in found)
    assert len({r.request_id for r in found}) == len(found)
    assert len([r async for r in archive_store.requests_since(0)]) == 600


async def test_schema_is_migrated_once(archive_store: ArchiveStore) -> None:
    await archive_store.put([archived("dr_a")])
    assert await archive_store.schema_version() == len(migrations("sqlite"))
    assert len(migrations("sqlite")) == len(migrations("postgresql"))


async def test_a_second_store_on_the_same_data_sees_it(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Reopening (a restarted process, or a second worker) applies no migration again."""
    for dsn in (None, request.getfixturevalue("archive_dsn")):
        first = open_archive(tmp_path / "shared", dsn)
        await first.put([archived("dr_a")])
        second = open_archive(tmp_path / "shared", dsn)
        assert (await second.counts()).requests == 1
        assert await second.schema_version() == 1
        await first.close()
        await second.close()


async def test_sqlite_is_lazy_and_in_wal_mode(tmp_path: Path) -> None:
    """Reads of a store never written create nothing; the first write makes a WAL file."""
    store = SqliteArchive(tmp_path / "archive")
    assert await get_one(store, "dr_a") is None
    assert (await store.counts()).requests == 0
    assert not (tmp_path / "archive").exists()
    await store.put([archived("dr_a")])
    await store.close()
    with sqlite3.connect(tmp_path / "archive" / FILE_NAME) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(1,)]


async def test_postgres_location_names_no_password(archive_dsn: str) -> None:
    store = open_archive(Path("unused"), archive_dsn.replace("fcd@", "fcd:s3cret@"))
    assert "s3cret" not in store.location
    await store.close()
