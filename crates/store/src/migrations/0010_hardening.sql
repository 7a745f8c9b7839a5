-- Idempotency records are purged 24 hours after they were made (API.md): the purge reads them by age.
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
