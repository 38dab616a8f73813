-- Schema 3: webhook_status counts the test events every instance receives,
-- so that the instance running the self-test sees its test event arrive
-- wherever the load balancer sent it. The table is made again so that its
-- text is sql/schema.sql's.
ALTER TABLE webhook_status RENAME TO webhook_status_v2;

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

INSERT INTO webhook_status (
    endpoint, last_validation_at, last_validation_peer, webhook_id, registered_at,
    last_test_at, last_test_result, last_test_step, last_test_http_status,
    last_test_rtt_ms, last_error, last_passed_at)
SELECT endpoint, last_validation_at, last_validation_peer, webhook_id, registered_at,
    last_test_at, last_test_result, last_test_step, last_test_http_status,
    last_test_rtt_ms, last_error, last_passed_at
  FROM webhook_status_v2;
DROP TABLE webhook_status_v2;

PRAGMA user_version = 3;
