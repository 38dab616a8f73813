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
    address         TEXT COLLATE NOCASE,
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
    digest          TEXT    NOT NULL,           -- event time (16 hex digits) and SHA-256: redeliveries collide
    message         INTEGER             -- messages.id; NULL without an Address
);
CREATE INDEX events_received_at ON events (received_at);
-- A digest is unique (a redelivery is stored once) through the index the
-- queries by type and time use, so that no b-tree of its own takes a page
-- write per event (bench/README.md); events without a DateTime have theirs.
CREATE UNIQUE INDEX events_type_occurred_at ON events (type, occurred_at, digest);
CREATE UNIQUE INDEX events_digest_undated ON events (digest) WHERE occurred_at IS NULL;
CREATE INDEX events_mailing_id ON events (mailing_id, occurred_at);
CREATE INDEX events_message ON events (message);

-- The latest state of each message, kept by the writer in the transaction that
-- stores the event, so it never disagrees with events. A message is keyed by
-- (server_id, message_id, address), or by (server_id, mailing_id, address)
-- when the events carry no MessageId; events with neither id share one row
-- per (server_id, address) that is never correlated. Every event with an
-- Address belongs to one row (events.message): lookups by address or message
-- id go through this table. Milestones are placed by event time (occurred_at,
-- or received_at when the event has no DateTime), so the order in which
-- notifications arrive does not matter.
CREATE TABLE messages (
    id              INTEGER PRIMARY KEY,
    server_id       INTEGER NOT NULL,   -- 0 when the events carry no ServerId
    message_id      TEXT,               -- NULL when keyed by mailing_id
    mailing_id      TEXT,
    address         TEXT    NOT NULL COLLATE NOCASE,
    is_test         INTEGER NOT NULL DEFAULT 0,     -- made of test events
    state           TEXT,               -- Queued Deferred Sent Failed: latest by event time, NULL before any
    first_at        TEXT    NOT NULL,   -- earliest event time
    last_at         TEXT    NOT NULL,   -- latest event time
    updated_at      TEXT    NOT NULL,   -- latest received_at (retention)
    events          INTEGER NOT NULL,   -- events stored for this message
    queued_at       TEXT,
    deferred_count  INTEGER NOT NULL DEFAULT 0,
    deferred_at     TEXT,               -- latest deferral
    sent_at         TEXT,               -- earliest Sent
    failed_at       TEXT,               -- earliest Failed, with its failure_type, failure_code, reason
    failure_type    TEXT,
    failure_code    INTEGER,
    reason          TEXT,
    complained_at   TEXT,
    opened_at       TEXT,               -- first open
    open_count      INTEGER NOT NULL DEFAULT 0,
    clicked_at      TEXT,               -- first click
    click_count     INTEGER NOT NULL DEFAULT 0,
    unsubscribed_at TEXT
);
CREATE UNIQUE INDEX messages_by_message_id ON messages (message_id, address, server_id) WHERE message_id IS NOT NULL;
CREATE UNIQUE INDEX messages_by_mailing_id ON messages (mailing_id, address, server_id) WHERE message_id IS NULL;
CREATE INDEX messages_address ON messages (address);
CREATE INDEX messages_failed_at ON messages (failed_at) WHERE failed_at IS NOT NULL;

-- Messages reported Sent and later, by event time, Failed: the receiving
-- server accepted them and bounced them afterwards. Suppressed failures
-- (no delivery was attempted), test messages and events without ids are
-- not bounces. delay_seconds: to the nearest second, halves up, counted
-- exactly in microseconds (julianday's floating point would round 0.5 s
-- down at times; PostgreSQL counts the same way).
CREATE VIEW async_bounces AS
SELECT server_id, message_id, mailing_id, address, sent_at, failed_at,
       ((strftime('%s', failed_at) - strftime('%s', sent_at)) * 1000000
        + CAST(substr(failed_at, 21, 6) AS INTEGER) - CAST(substr(sent_at, 21, 6) AS INTEGER) + 500000)
           / 1000000 AS delay_seconds,
       failure_type, failure_code, reason
  FROM messages
 WHERE failed_at > sent_at AND failure_type IS NOT 'Suppressed' AND is_test = 0
   AND (message_id IS NOT NULL OR mailing_id IS NOT NULL);

-- Addresses not to mail again: hard-bounced (Permanent, or already suppressed
-- by SocketLabs), complained or unsubscribed. Test events excluded.
CREATE VIEW suppressions AS
SELECT address,
       trim(iif(bounced_at IS NULL, '', 'bounce ') || iif(complained_at IS NULL, '', 'complaint ') ||
            iif(unsubscribed_at IS NULL, '', 'unsubscribe')) AS reasons,
       min(coalesce(bounced_at, '9'), coalesce(complained_at, '9'), coalesce(unsubscribed_at, '9')) AS since,
       bounced_at, complained_at, unsubscribed_at
  FROM (SELECT address,
               min(iif(type = 'Failed', coalesce(occurred_at, received_at), NULL)) AS bounced_at,
               min(iif(type = 'Complaint', coalesce(occurred_at, received_at), NULL)) AS complained_at,
               min(iif(type = 'Unsubscribe', coalesce(occurred_at, received_at), NULL)) AS unsubscribed_at
          FROM events
         WHERE is_test = 0 AND address IS NOT NULL AND address <> ''
           AND (type IN ('Complaint', 'Unsubscribe')
                OR (type = 'Failed' AND failure_type IN ('Permanent', 'Suppressed')))
         GROUP BY address);

-- Events per hour of event time (UTC, "YYYY-MM-DDTHH") and type, kept by the
-- writer in the transaction that stores the event and by retention as it
-- deletes: slhookctl stats adds these up instead of counting events.
CREATE TABLE event_counts (
    hour            TEXT    NOT NULL,
    type            TEXT    NOT NULL,
    events          INTEGER NOT NULL,
    PRIMARY KEY (hour, type)
) WITHOUT ROWID;

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

-- What happened to each webhook endpoint: the last Validation handshake, and
-- what the management thread last did through the SocketLabs API.
CREATE TABLE webhook_status (
    endpoint              TEXT PRIMARY KEY,
    last_validation_at    TEXT,
    last_validation_peer  TEXT,
    webhook_id            TEXT,       -- the webhook at SocketLabs
    registered_at         TEXT,       -- when it was last found or created
    last_test_at          TEXT,       -- when the last self-test ended
    last_test_result      TEXT,       -- passed | failed
    last_test_step        TEXT,       -- register | secret | perform-test | wait: where it ended
    last_test_http_status INTEGER,    -- of the last API call
    last_test_rtt_ms      REAL,       -- perform-test called to the test event stored
    last_error            TEXT,       -- why it failed; NULL when it passed
    last_passed_at        TEXT,
    test_events           INTEGER NOT NULL DEFAULT 0,  -- test events received, by any instance
    last_test_event_at    TEXT        -- when the last one was stored
);

-- Where each [forward NAME] stands (slhookd's forwarding, and slhookctl
-- forward status / rewind).
CREATE TABLE forward_cursors (
    forward         TEXT    PRIMARY KEY,        -- [forward NAME]
    cursor          INTEGER NOT NULL,           -- every event with an id up to it was delivered (2xx) or not for it
    rewound         INTEGER NOT NULL DEFAULT 0, -- counts slhookctl forward rewind: the forwarder takes cursor again
    created_at      TEXT    NOT NULL,
    updated_at      TEXT    NOT NULL,
    delivered       INTEGER NOT NULL DEFAULT 0, -- events delivered
    last_success_at TEXT,
    last_error      TEXT,                       -- the last failed attempt, NULL once one succeeds
    last_error_at   TEXT
);

-- Sending health per subaccount (slhookctl health, the daemon's
-- [health] watch, /dashboard). What each (hour of event time, ServerId,
-- MailingId) holds of each kind, kept by the writer in the transaction that
-- stores the event, as event_counts is, and by retention as it deletes:
--   sent deferred complaints unsubscribes failed_permanent failed_temporary
--   failed_suppressed   events of that type (Failed by FailureType);
--   opens clicks        messages, in the hour of their first open or click;
--   async_bounces       messages of async_bounces, in the hour they failed.
-- Test events are not counted; no ServerId is 0, no MailingId ''.
CREATE TABLE health_counts (
    hour            TEXT    NOT NULL,   -- "YYYY-MM-DDTHH" (UTC)
    server_id       INTEGER NOT NULL,
    mailing_id      TEXT    NOT NULL,
    kind            TEXT    NOT NULL,
    n               INTEGER NOT NULL,
    PRIMARY KEY (hour, server_id, mailing_id, kind)
) WITHOUT ROWID;

-- health_counts summed over MailingId, a column per kind: what whole hours
-- by subaccount are read from (a week is 168 rows a subaccount).
CREATE TABLE health_hours (
    hour                TEXT    NOT NULL,
    server_id           INTEGER NOT NULL,
    sent                INTEGER NOT NULL DEFAULT 0,
    failed_permanent    INTEGER NOT NULL DEFAULT 0,
    failed_temporary    INTEGER NOT NULL DEFAULT 0,
    failed_suppressed   INTEGER NOT NULL DEFAULT 0,
    async_bounces       INTEGER NOT NULL DEFAULT 0,
    deferred            INTEGER NOT NULL DEFAULT 0,
    complaints          INTEGER NOT NULL DEFAULT 0,
    unsubscribes        INTEGER NOT NULL DEFAULT 0,
    opens               INTEGER NOT NULL DEFAULT 0,
    clicks              INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (hour, server_id)
) WITHOUT ROWID;

PRAGMA user_version = 9;
