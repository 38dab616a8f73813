-- Schema 1 -> 2: message state and async-bounce correlation.
-- events is rebuilt (address compares case-insensitively, digests are led by
-- the event time, each event links to its message); the CREATE statements
-- below are those of sql/schema.sql, character for character. The daemon then
-- fills messages and events.message from the events already stored (store.c,
-- messages_rebuild) in the same transaction.
DROP INDEX events_received_at;
DROP INDEX events_type_occurred_at;
DROP INDEX events_message_id;
DROP INDEX events_address;
ALTER TABLE events RENAME TO events_v1;
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
    digest          TEXT    NOT NULL UNIQUE,    -- event time (16 hex digits) and SHA-256: redeliveries collide
    message         INTEGER             -- messages.id; NULL without an Address
);
-- Schema 1's digests were the SHA-256 alone: led by the event time now.
INSERT INTO events (id, received_at, endpoint, type, wire_type, occurred_at, server_id, subaccount_id, ip_pool_id, message_id, mailing_id, address, from_address, subject, message_size, failure_type, failure_code, deferral_code, reason, response, local_ip, remote_mta, bounce_status, diagnostic_code, tracking_type, user_agent, client_ip, url, tag, fbl_type, fbl_from, fbl_to, length, date_time, meta, tags, is_test, peer, raw, digest)
SELECT id, received_at, endpoint, type, wire_type, occurred_at, server_id, subaccount_id, ip_pool_id, message_id, mailing_id, address, from_address, subject, message_size, failure_type, failure_code, deferral_code, reason, response, local_ip, remote_mta, bounce_status, diagnostic_code, tracking_type, user_agent, client_ip, url, tag, fbl_type, fbl_from, fbl_to, length, date_time, meta, tags, is_test, peer, raw,
       printf('%016x', max(0, coalesce(CAST(strftime('%s', substr(occurred_at, 1, 19)) AS INTEGER) * 1000000
                                        + CAST(substr(occurred_at, 21, 6) AS INTEGER), 0))) || digest
  FROM events_v1;
DROP TABLE events_v1;
CREATE INDEX events_received_at ON events (received_at);
CREATE INDEX events_occurred_at ON events (occurred_at);
CREATE INDEX events_type_occurred_at ON events (type, occurred_at);
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
-- not bounces.
CREATE VIEW async_bounces AS
SELECT server_id, message_id, mailing_id, address, sent_at, failed_at,
       CAST(round((julianday(failed_at) - julianday(sent_at)) * 86400) AS INTEGER) AS delay_seconds,
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

CREATE TABLE event_counts (
    hour            TEXT    NOT NULL,
    type            TEXT    NOT NULL,
    events          INTEGER NOT NULL,
    PRIMARY KEY (hour, type)
) WITHOUT ROWID;
INSERT INTO event_counts (hour, type, events)
SELECT substr(occurred_at, 1, 13), type, count(*) FROM events WHERE occurred_at IS NOT NULL GROUP BY 1, 2;

ALTER TABLE webhook_status RENAME TO webhook_status_v1;
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
    last_passed_at        TEXT
);

INSERT INTO webhook_status (endpoint, last_validation_at, last_validation_peer)
SELECT endpoint, last_validation_at, last_validation_peer FROM webhook_status_v1;
DROP TABLE webhook_status_v1;

PRAGMA user_version = 2;
