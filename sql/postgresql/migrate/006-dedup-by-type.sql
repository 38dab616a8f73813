-- Schema 6: SQLite's events dropped the digest's own unique index (see
-- sql/migrate/006-dedup-by-type.sql). PostgreSQL keeps it: its instances
-- look digests up by it before they insert (store_pg.c).
UPDATE slhookd_schema SET version = 6;
