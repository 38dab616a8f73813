-- Schema 4: async_bounces counts delay_seconds exactly (to the nearest
-- second, halves up, as PostgreSQL does; julianday's floating point rounded
-- some halves down), and a message any of whose events is a test is a test
-- message (it was the first event's flag only).
DROP VIEW async_bounces;
CREATE VIEW async_bounces AS
SELECT server_id, message_id, mailing_id, address, sent_at, failed_at,
       ((strftime('%s', failed_at) - strftime('%s', sent_at)) * 1000000
        + CAST(substr(failed_at, 21, 6) AS INTEGER) - CAST(substr(sent_at, 21, 6) AS INTEGER) + 500000)
           / 1000000 AS delay_seconds,
       failure_type, failure_code, reason
  FROM messages
 WHERE failed_at > sent_at AND failure_type IS NOT 'Suppressed' AND is_test = 0
   AND (message_id IS NOT NULL OR mailing_id IS NOT NULL);

UPDATE messages SET is_test = 1
 WHERE is_test = 0 AND EXISTS (SELECT 1 FROM events WHERE events.message = messages.id AND events.is_test = 1);

PRAGMA user_version = 4;
