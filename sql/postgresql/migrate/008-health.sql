-- Schema 8: sending health per subaccount (see sql/migrate/008-health.sql).
CREATE TABLE health_counts (
    hour            text    COLLATE "C" NOT NULL,
    server_id       bigint  NOT NULL,
    mailing_id      text    COLLATE "C" NOT NULL,
    kind            text    COLLATE "C" NOT NULL,
    n               bigint  NOT NULL,
    PRIMARY KEY (hour, server_id, mailing_id, kind)
);
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
) AS c WHERE k IS NOT NULL
GROUP BY h, s, g, k;
UPDATE slhookd_schema SET version = 8;
