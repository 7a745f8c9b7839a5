-- The card network's view of an authorization: its duplicate key is field 32 + 11 + 7 (acquirer, STAN,
-- transmission time), unique, so a repeat can never be processed twice even when it races its original. The card
-- number's keyed hash lets a duplicate with another card number be told apart without storing the number.
ALTER TABLE authorizations ADD COLUMN number_hash {bytes};
ALTER TABLE authorizations ADD COLUMN stand_in BIGINT NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX authorizations_network_key ON authorizations (acquirer_id, stan, transmission_time);
CREATE INDEX authorizations_rrn ON authorizations (rrn);

-- Reversals as received (0400/0420), matched or not. An unmatched reversal stays here so that an original
-- arriving after it is declined.
CREATE TABLE reversals (
    id TEXT PRIMARY KEY,
    mti TEXT NOT NULL,
    acquirer_id TEXT NOT NULL,
    stan TEXT NOT NULL,
    transmission_time TEXT NOT NULL,
    original_acquirer_id TEXT,
    original_stan TEXT,
    original_transmission_time TEXT,
    rrn TEXT,
    number_hash {bytes} NOT NULL,
    amount BIGINT NOT NULL,
    replacement_amount BIGINT,
    authorization_id TEXT REFERENCES authorizations (id),
    response_code TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX reversals_network_key ON reversals (acquirer_id, stan, transmission_time);
CREATE INDEX reversals_original ON reversals (original_acquirer_id, original_stan, original_transmission_time);
