-- The archive's first schema (SQLite). One row per archived request, one per event id.
CREATE TABLE requests (
    request_id  TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,           -- 'account' or 'customer'
    subject     TEXT NOT NULL,           -- the account (fca_...) or customer (cus_...) id
    parent_id   TEXT,                    -- a customer-level parent's id, for its children
    status      TEXT NOT NULL,
    created_at  REAL NOT NULL,           -- unix seconds
    updated_at  REAL NOT NULL,           -- unix seconds of the last status change
    last_ts     REAL NOT NULL,           -- unix seconds of the newest audit record
    archived_at REAL NOT NULL,
    fields      TEXT NOT NULL,           -- JSON object: the Redis hash as it was
    history     TEXT NOT NULL,           -- JSON array: every audit record, oldest first
    children    TEXT NOT NULL DEFAULT '{}'  -- JSON object: account id -> child request id
);
CREATE INDEX requests_subject ON requests (subject, created_at);
CREATE INDEX requests_last_ts ON requests (last_ts);
CREATE TABLE events (
    event_key  TEXT PRIMARY KEY,         -- '<service>:<event id>'
    request_id TEXT NOT NULL,
    digest     TEXT NOT NULL,            -- SHA-256 of the normalised body
    result     TEXT NOT NULL,            -- the JSON result answered for it
    at         TEXT NOT NULL             -- unix seconds it was first claimed, as stored
);
CREATE INDEX events_request ON events (request_id);
