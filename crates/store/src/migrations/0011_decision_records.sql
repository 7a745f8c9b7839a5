-- Each authorization keeps what its decision read (the card as it was, the cardholder's standing and recent
-- approvals, the CVV2 check) and the rules' version, as JSON, so that it can be replayed. Older rows have none.
ALTER TABLE authorizations ADD COLUMN decision TEXT;
-- The authorization path reads each cardholder's recent history (`cardholder_id IN (…) AND created_at > …`) and
-- classifies it in the domain (spending approvals, CVV2 failures): every column it reads is in the index.
CREATE INDEX authorizations_cardholder_history ON authorizations
    (cardholder_id, created_at, kind, response_code, decline_reason);
DROP INDEX authorizations_cardholder_recent;
-- And each card's recent declines (the rule that freezes a card after repeated declines): few rows, few entries.
CREATE INDEX authorizations_card_declines ON authorizations (card_id, created_at) WHERE decline_reason IS NOT NULL;
