-- Schema 5: no index on events (occurred_at) alone (see sql/migrate/005-events-by-type.sql).
DROP INDEX IF EXISTS events_occurred_at;
UPDATE slhookd_schema SET version = 5;
