-- Schema 5: no index on events (occurred_at) alone. Events arrive seconds
-- out of event-time order, so each one landed on a random page of it and
-- every commit rewrote a hundred of its pages (bench/README.md); slhookctl
-- events reads the newest through events_type_occurred_at, type by type.
DROP INDEX IF EXISTS events_occurred_at;
PRAGMA user_version = 5;
