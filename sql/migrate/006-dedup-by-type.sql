-- Schema 5 -> 6: the digest's own unique index is gone; a digest is unique
-- through (type, occurred_at, digest), the index the queries by type and time
-- already needed (and events without a DateTime through their own). Each of
-- the two b-trees cost a page write per event (bench/README.md). SQLite
-- cannot drop a column's UNIQUE: events is rebuilt, rows and ids as they
-- were. The CREATE statements are those of sql/schema.sql, character for
-- character.
DROP VIEW suppressions;
ALTER TABLE events RENAME TO events_v5;
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
INSERT INTO events (id, received_at, endpoint, type, wire_type, occurred_at, server_id, subaccount_id, ip_pool_id, message_id, mailing_id, address, from_address, subject, message_size, failure_type, failure_code, deferral_code, reason, response, local_ip, remote_mta, bounce_status, diagnostic_code, tracking_type, user_agent, client_ip, url, tag, fbl_type, fbl_from, fbl_to, length, date_time, meta, tags, is_test, peer, raw, digest, message)
SELECT id, received_at, endpoint, type, wire_type, occurred_at, server_id, subaccount_id, ip_pool_id, message_id, mailing_id, address, from_address, subject, message_size, failure_type, failure_code, deferral_code, reason, response, local_ip, remote_mta, bounce_status, diagnostic_code, tracking_type, user_agent, client_ip, url, tag, fbl_type, fbl_from, fbl_to, length, date_time, meta, tags, is_test, peer, raw, digest, message
  FROM events_v5 ORDER BY id;
DROP TABLE events_v5;
CREATE INDEX events_received_at ON events (received_at);
-- A digest is unique (a redelivery is stored once) through the index the
-- queries by type and time use, so that no b-tree of its own takes a page
-- write per event (bench/README.md); events without a DateTime have theirs.
CREATE UNIQUE INDEX events_type_occurred_at ON events (type, occurred_at, digest);
CREATE UNIQUE INDEX events_digest_undated ON events (digest) WHERE occurred_at IS NULL;
CREATE INDEX events_mailing_id ON events (mailing_id, occurred_at);
CREATE INDEX events_message ON events (message);

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
PRAGMA user_version = 6;
