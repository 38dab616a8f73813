-- Schema 8: sending health per subaccount (slhookctl health, the daemon's
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
INSERT INTO health_counts (hour, server_id, mailing_id, kind, n)
SELECT h, s, g, k, count(*) FROM (
    SELECT substr(coalesce(occurred_at, received_at), 1, 13) AS h, coalesce(server_id, 0) AS s,
           coalesce(mailing_id, '') AS g,
           CASE type WHEN 'Sent' THEN 'sent' WHEN 'Deferred' THEN 'deferred' WHEN 'Complaint' THEN 'complaints'
                     WHEN 'Unsubscribe' THEN 'unsubscribes'
                     WHEN 'Failed' THEN CASE failure_type WHEN 'Permanent' THEN 'failed_permanent'
                                                          WHEN 'Temporary' THEN 'failed_temporary'
                                                          WHEN 'Suppressed' THEN 'failed_suppressed' END END AS k
      FROM events WHERE is_test = 0
    UNION ALL
    SELECT substr(opened_at, 1, 13), server_id, coalesce(mailing_id, ''), 'opens'
      FROM messages WHERE opened_at IS NOT NULL AND is_test = 0
    UNION ALL
    SELECT substr(clicked_at, 1, 13), server_id, coalesce(mailing_id, ''), 'clicks'
      FROM messages WHERE clicked_at IS NOT NULL AND is_test = 0
    UNION ALL
    SELECT substr(failed_at, 1, 13), server_id, coalesce(mailing_id, ''), 'async_bounces' FROM async_bounces
) WHERE k IS NOT NULL
GROUP BY h, s, g, k;
PRAGMA user_version = 8;
