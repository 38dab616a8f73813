-- Schema 9: health_counts summed over MailingId, one row per (hour, ServerId)
-- with a column per kind: what slhookctl health, the [health] watch and
-- /dashboard read for whole hours by subaccount (a week is 168 rows a
-- subaccount, where health_counts has one per mailing and kind). The writer
-- keeps it in the same transaction as health_counts, retention as well.
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
INSERT INTO health_hours (hour, server_id, sent, failed_permanent, failed_temporary, failed_suppressed, async_bounces, deferred, complaints, unsubscribes, opens, clicks)
SELECT hour, server_id,
       sum(CASE kind WHEN 'sent' THEN n ELSE 0 END),
       sum(CASE kind WHEN 'failed_permanent' THEN n ELSE 0 END),
       sum(CASE kind WHEN 'failed_temporary' THEN n ELSE 0 END),
       sum(CASE kind WHEN 'failed_suppressed' THEN n ELSE 0 END),
       sum(CASE kind WHEN 'async_bounces' THEN n ELSE 0 END),
       sum(CASE kind WHEN 'deferred' THEN n ELSE 0 END),
       sum(CASE kind WHEN 'complaints' THEN n ELSE 0 END),
       sum(CASE kind WHEN 'unsubscribes' THEN n ELSE 0 END),
       sum(CASE kind WHEN 'opens' THEN n ELSE 0 END),
       sum(CASE kind WHEN 'clicks' THEN n ELSE 0 END)
  FROM health_counts GROUP BY hour, server_id;
PRAGMA user_version = 9;
