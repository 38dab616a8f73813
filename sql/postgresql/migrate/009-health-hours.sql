-- Schema 9: health_counts by (hour, ServerId) (see sql/migrate/009-health-hours.sql).
CREATE TABLE health_hours (
    hour                text    COLLATE "C" NOT NULL,
    server_id           bigint  NOT NULL,
    sent                bigint  NOT NULL DEFAULT 0,
    failed_permanent    bigint  NOT NULL DEFAULT 0,
    failed_temporary    bigint  NOT NULL DEFAULT 0,
    failed_suppressed   bigint  NOT NULL DEFAULT 0,
    async_bounces       bigint  NOT NULL DEFAULT 0,
    deferred            bigint  NOT NULL DEFAULT 0,
    complaints          bigint  NOT NULL DEFAULT 0,
    unsubscribes        bigint  NOT NULL DEFAULT 0,
    opens               bigint  NOT NULL DEFAULT 0,
    clicks              bigint  NOT NULL DEFAULT 0,
    PRIMARY KEY (hour, server_id)
);
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
UPDATE slhookd_schema SET version = 9;
