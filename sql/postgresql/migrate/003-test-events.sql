-- Schema 3: webhook_status counts the test events every instance receives,
-- so that the instance running the self-test sees its test event arrive
-- wherever the load balancer sent it.
ALTER TABLE webhook_status ADD COLUMN test_events bigint NOT NULL DEFAULT 0;
ALTER TABLE webhook_status ADD COLUMN last_test_event_at text COLLATE "C";
UPDATE slhookd_schema SET version = 3;
