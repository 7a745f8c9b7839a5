-- The authorization path reads each cardholder's recent approvals and CVV2 failures (`cardholder_id IN (…) AND
-- created_at > …`). With only (cardholder_id, id), PostgreSQL chose a scan of the whole table for a batch's
-- cardholders once the table had grown (42 ms at 100,000 authorizations, and growing with it). Listing a
-- cardholder's authorizations newest first sorts that cardholder's rows instead.
CREATE INDEX authorizations_cardholder_time ON authorizations (cardholder_id, created_at);
DROP INDEX authorizations_cardholder;
