"""The archive: a durable, queryable store of finished requests that left Redis (issue 17).

The bottom layer: it knows nothing of Redis or the ledger. :mod:`archive.store` is the one small
interface (:class:`ArchiveStore`) and what it stores (:class:`ArchivedRequest`); the backends are
:mod:`archive.sqlite` (the embedded default, one WAL-mode file) and :mod:`archive.postgresql`
(for fleets). :func:`open_archive` picks one from the settings' values. The ledger moves requests
here (:mod:`ledger.archiving`) and reads fall through to it.
"""

from archive.store import ArchivedEvent, ArchivedRequest, ArchiveStore, open_archive

__all__ = ["ArchiveStore", "ArchivedEvent", "ArchivedRequest", "open_archive"]
