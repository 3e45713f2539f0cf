"""The archive's one interface, what it stores, and its versioned schema migrations.

Contracts every backend keeps:

- :meth:`ArchiveStore.put` is idempotent by request id (and event key): writing a request again
  replaces its row (an upsert), so a pass that wrote but did not remove from Redis, re-run, leaves
  exactly one row. When ``put`` returns, the whole batch is committed (one transaction).
- Reads of a store that was never written answer "nothing archived" and create nothing.
- The schema is the SQL files in ``archive/migrations/<backend>/NNNN_<name>.sql``, applied in
  order on first use, each in a transaction that also records its number in ``schema_version``;
  concurrent openers apply each file once.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

_MIGRATION = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


@dataclass(frozen=True)
class ArchivedEvent:
    """A caller's event id record (``P intake:<service>:<event_id>`` in Redis)."""

    key: str  # "<service>:<event id>"
    request_id: str
    digest: str  # ``h``: SHA-256 of the normalised body
    result: str  # ``r``: the JSON result answered for it
    at: str  # ``at``: unix seconds it was claimed, as stored


@dataclass(frozen=True)
class ArchivedRequest:
    """One finished request, whole: its hash, its full audit history, its event ids."""

    request_id: str
    kind: str  # "account" or "customer" (ledger.kinds.RequestKind.name)
    subject: str  # the account id (fca_…) or the customer id (cus_…)
    status: str
    created_at: float
    updated_at: float
    fields: dict[str, str]  # the Redis hash as it was
    #: The request's history list as the ledger stores it, as one JSON array (compact records:
    #: no null keys, none of the request's own fields; the ledger's reads restore both).
    history_json: str
    last_ts: float  # unix seconds of the newest audit record
    archived_at: float
    parent_id: str | None = None
    children: dict[str, str] = field(default_factory=dict)  # account id -> child request id
    events: tuple[ArchivedEvent, ...] = ()

    @property
    def records(self) -> list[dict[str, Any]]:
        """The stored history records, decoded (compact, as :attr:`history_json` holds them)."""
        decoded: list[dict[str, Any]] = json.loads(self.history_json)
        return decoded


@dataclass(frozen=True)
class ArchiveCounts:
    requests: int
    events: int
    records: int


def iso_seconds(ts: str) -> float:
    """Unix seconds of an audit record's ``ts`` (ISO 8601, ``Z`` for UTC)."""
    return datetime.fromisoformat(ts).timestamp()


class ArchiveStore(Protocol):
    """Where finished requests go when they leave Redis (see the module docstring)."""

    #: Where the store is, for logs and ``fcd doctor`` (never a password).
    location: str

    async def put(self, requests: Sequence[ArchivedRequest]) -> None:
        """Upsert ``requests`` (and their event ids) in one committed transaction."""
        ...

    async def get_many(self, request_ids: Sequence[str]) -> dict[str, ArchivedRequest]:
        """The archived requests among ``request_ids``, by id."""
        ...

    async def for_subject(self, subject: str) -> list[ArchivedRequest]:
        """Every archived request of an account (or customer), oldest first."""
        ...

    async def event(self, key: str) -> ArchivedEvent | None:
        """The archived event id ``<service>:<event id>``, if any."""
        ...

    def requests_since(self, since: float) -> AsyncIterator[ArchivedRequest]:
        """Every archived request whose newest audit record is at or after ``since`` (unix
        seconds), in the order of that record."""
        ...

    async def counts(self) -> ArchiveCounts:
        """How many requests, event ids and audit records are archived."""
        ...

    async def schema_version(self) -> int:
        """The newest migration applied (0 for a store never written)."""
        ...

    async def close(self) -> None: ...


async def get_one(store: ArchiveStore, request_id: str) -> ArchivedRequest | None:
    """One archived request by id, or ``None``."""
    return (await store.get_many([request_id])).get(request_id)


def migrations(backend: str) -> list[tuple[int, str]]:
    """``(version, sql)`` of every migration of ``backend``, in order."""
    folder = resources.files("archive").joinpath("migrations", backend)
    found = []
    for entry in folder.iterdir():
        match = _MIGRATION.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.read_text(encoding="utf-8")))
    found.sort()
    if [version for version, _ in found] != list(range(1, len(found) + 1)):
        raise RuntimeError(f"archive migrations of {backend} are not numbered 0001, 0002, …")
    return found


def row_values(request: ArchivedRequest) -> dict[str, Any]:
    """The ``requests`` row of ``request`` (JSON columns as text)."""
    return {
        "request_id": request.request_id,
        "kind": request.kind,
        "subject": request.subject,
        "parent_id": request.parent_id,
        "status": request.status,
        "created_at": request.created_at,
        "updated_at": request.updated_at,
        "last_ts": request.last_ts,
        "archived_at": request.archived_at,
        "fields": dumps(request.fields),
        "history": request.history_json,
        "children": dumps(request.children),
    }


REQUEST_COLUMNS = (
    "request_id", "kind", "subject", "parent_id", "status", "created_at", "updated_at",
    "last_ts", "archived_at", "fields", "history", "children",
)  # fmt: skip
EVENT_COLUMNS = ("event_key", "request_id", "digest", "result", "at")


def upsert_sql(
    table: str,
    columns: Sequence[str],
    key: str,
    placeholder: str,
    casts: Mapping[str, str] | None = None,
) -> str:
    """``INSERT … ON CONFLICT (key) DO UPDATE`` (the same text for SQLite and PostgreSQL);
    ``casts`` appends a cast to a column's placeholder (PostgreSQL's ``::jsonb``)."""
    names = ", ".join(columns)
    marks = ", ".join(placeholder + (casts or {}).get(c, "") for c in columns)
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c != key)
    return f"INSERT INTO {table} ({names}) VALUES ({marks}) ON CONFLICT ({key}) DO UPDATE SET {updates}"  # noqa: S608


def event_from_row(row: Mapping[str, Any]) -> ArchivedEvent:
    """An :class:`ArchivedEvent` from an ``events`` row."""
    return ArchivedEvent(
        row["event_key"], row["request_id"], row["digest"], row["result"], row["at"]
    )


def event_rows(requests: Sequence[ArchivedRequest]) -> list[tuple[Any, ...]]:
    return [(e.key, e.request_id, e.digest, e.result, e.at) for r in requests for e in r.events]


def from_row(row: Mapping[str, Any], events: Sequence[ArchivedEvent] = ()) -> ArchivedRequest:
    """An :class:`ArchivedRequest` from a ``requests`` row (JSON columns as text or decoded)."""

    def decoded(value: Any) -> Any:
        return json.loads(value) if isinstance(value, str | bytes) else value

    return ArchivedRequest(
        request_id=row["request_id"],
        kind=row["kind"],
        subject=row["subject"],
        parent_id=row["parent_id"],
        status=row["status"],
        created_at=float(row["created_at"]),
        updated_at=float(row["updated_at"]),
        archived_at=float(row["archived_at"]),
        fields=decoded(row["fields"]),
        history_json=row["history"] if isinstance(row["history"], str) else dumps(row["history"]),
        last_ts=float(row["last_ts"]),
        children=decoded(row["children"]),
        events=tuple(events),
    )


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def open_archive(directory: Path, dsn: str | None) -> ArchiveStore:
    """The archive the settings name: PostgreSQL at ``dsn`` if given, else SQLite in
    ``directory`` (opened lazily: nothing is created until the first write)."""
    if dsn:
        from archive.postgresql import PostgresArchive

        return PostgresArchive(dsn)
    from archive.sqlite import SqliteArchive

    return SqliteArchive(directory)
