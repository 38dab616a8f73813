-- Schema 4: a message any of whose events is a test is a test message (it
-- was the first event's flag only). (async_bounces already counted its
-- delays exactly here; SQLite's view now counts them the same way.)
UPDATE messages SET is_test = 1
 WHERE is_test = 0 AND EXISTS (SELECT 1 FROM events WHERE events.message = messages.id AND events.is_test = 1);
UPDATE slhookd_schema SET version = 4;
