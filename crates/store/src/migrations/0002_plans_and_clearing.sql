-- Payment plans. The schedule is the domain's plan, stored whole as JSON; the columns beside it are what queries
-- filter and sum on.
CREATE TABLE plans (
    id TEXT PRIMARY KEY,
    card_id TEXT NOT NULL UNIQUE REFERENCES cards (id),
    cardholder_id TEXT NOT NULL REFERENCES cardholders (id),
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    currency TEXT NOT NULL,
    balance BIGINT NOT NULL,
    document TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    version BIGINT NOT NULL
);
CREATE INDEX plans_cardholder ON plans (cardholder_id, status);

-- Clearing records as received. The network's record id is unique, so a record is never posted twice.
CREATE TABLE clearings (
    id TEXT PRIMARY KEY,
    record_id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    authorization_id TEXT REFERENCES authorizations (id),
    card_id TEXT REFERENCES cards (id),
    amount BIGINT NOT NULL,
    currency TEXT NOT NULL,
    result TEXT NOT NULL,
    flags TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX clearings_card ON clearings (card_id);
