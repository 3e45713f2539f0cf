-- The archive's first schema (PostgreSQL). One row per archived request, one per event id.
CREATE TABLE requests (
    request_id  TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    subject     TEXT NOT NULL,
    parent_id   TEXT,
    status      TEXT NOT NULL,
    created_at  DOUBLE PRECISION NOT NULL,
    updated_at  DOUBLE PRECISION NOT NULL,
    last_ts     DOUBLE PRECISION NOT NULL,
    archived_at DOUBLE PRECISION NOT NULL,
    fields      JSONB NOT NULL,
    history     JSONB NOT NULL,
    children    JSONB NOT NULL DEFAULT '{}'
);
CREATE INDEX requests_subject ON requests (subject, created_at);
CREATE INDEX requests_last_ts ON requests (last_ts);
CREATE TABLE events (
    event_key  TEXT PRIMARY KEY,
    request_id TEXT NOT NULL,
    digest     TEXT NOT NULL,
    result     TEXT NOT NULL,
    at         TEXT NOT NULL
);
CREATE INDEX events_request ON events (request_id);
