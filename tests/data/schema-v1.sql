-- slhookd database schema: what a new database gets, at the version set on
-- the last line. An existing database at an older version is brought here by
-- the steps in sql/migrate/ (NNN-what.sql takes version NNN-1 to NNN), each
-- applied at start-up inside one transaction. Times are UTC ISO-8601 text,
-- "YYYY-MM-DDTHH:MM:SS.ffffffZ", so they sort and compare as text.

-- One row per distinct event (redeliveries share the digest and are stored once).
CREATE TABLE events (
    id              INTEGER PRIMARY KEY,
    received_at     TEXT    NOT NULL,   -- when slhookd received it
    endpoint        TEXT    NOT NULL,   -- [endpoint NAME] it came in on
    type            TEXT    NOT NULL,   -- Queued Sent Failed Deferred Complaint Click Open Unsubscribe, or the wire Type
    wire_type       TEXT    NOT NULL,   -- Type as sent (Delivered, Tracking, ...)
    occurred_at     TEXT,               -- DateTime normalised to UTC
    server_id       INTEGER,
    subaccount_id   INTEGER,
    ip_pool_id      INTEGER,
    message_id      TEXT,
    mailing_id      TEXT,
    address         TEXT,
    from_address    TEXT,
    subject         TEXT,
    message_size    INTEGER,
    failure_type    TEXT,               -- Temporary Permanent Suppressed
    failure_code    INTEGER,
    deferral_code   INTEGER,
    reason          TEXT,
    response        TEXT,
    local_ip        TEXT,
    remote_mta      TEXT,
    bounce_status   TEXT,
    diagnostic_code TEXT,
    tracking_type   TEXT,               -- Click Open Unsubscribe
    user_agent      TEXT,
    client_ip       TEXT,
    url             TEXT,
    tag             TEXT,
    fbl_type        TEXT,
    fbl_from        TEXT,               -- Complaint "From"
    fbl_to          TEXT,               -- Complaint "To"
    length          INTEGER,
    date_time       TEXT,               -- DateTime exactly as sent
    meta            TEXT,               -- Data.Meta as JSON
    tags            TEXT,               -- Data.Tags as JSON
    is_test         INTEGER NOT NULL DEFAULT 0,
    peer            TEXT,               -- address of the sender
    raw             TEXT    NOT NULL,   -- the event JSON without SecretKey
    digest          TEXT    NOT NULL UNIQUE
);
CREATE INDEX events_received_at ON events (received_at);
CREATE INDEX events_type_occurred_at ON events (type, occurred_at);
CREATE INDEX events_message_id ON events (message_id);
CREATE INDEX events_address ON events (address);

-- Authenticated payloads that could not become an event row, with the reason.
CREATE TABLE quarantine (
    id              INTEGER PRIMARY KEY,
    received_at     TEXT    NOT NULL,
    endpoint        TEXT    NOT NULL,
    peer            TEXT,
    reason          TEXT    NOT NULL,
    raw             TEXT    NOT NULL,   -- without SecretKey
    digest          TEXT    NOT NULL UNIQUE
);

-- What happened to each webhook endpoint.
CREATE TABLE webhook_status (
    endpoint              TEXT PRIMARY KEY,
    last_validation_at    TEXT,
    last_validation_peer  TEXT
);

PRAGMA user_version = 1;
