-- Data-encryption and lookup keys, each wrapped by a key-encryption key (KEK). A key version may be wrapped by
-- several KEKs at once, so servers with the old and the new KEK both work during a rotation.
CREATE TABLE data_keys (
    purpose TEXT NOT NULL,
    version BIGINT NOT NULL,
    kek_id TEXT NOT NULL,
    wrapped {bytes} NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (purpose, version, kek_id)
);

CREATE TABLE settings (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    key_hash {bytes} NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);

CREATE TABLE cardholders (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    country TEXT NOT NULL,
    password_hash TEXT,
    status TEXT NOT NULL,
    restricted_reason TEXT,
    created_at BIGINT NOT NULL
);

CREATE TABLE funding_sources (
    id TEXT PRIMARY KEY,
    cardholder_id TEXT NOT NULL REFERENCES cardholders (id),
    brand TEXT NOT NULL,
    last4 TEXT NOT NULL,
    exp_month BIGINT NOT NULL,
    exp_year BIGINT NOT NULL,
    gateway_token TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX funding_sources_cardholder ON funding_sources (cardholder_id);

CREATE TABLE cards (
    id TEXT PRIMARY KEY,
    cardholder_id TEXT NOT NULL REFERENCES cardholders (id),
    funding_source_id TEXT NOT NULL REFERENCES funding_sources (id),
    number_hash {bytes} NOT NULL UNIQUE,
    number_ciphertext {bytes} NOT NULL,
    data_key_version BIGINT NOT NULL,
    cvk_version BIGINT NOT NULL,
    bin TEXT NOT NULL,
    last4 TEXT NOT NULL,
    exp_month BIGINT NOT NULL,
    exp_year BIGINT NOT NULL,
    currency TEXT NOT NULL,
    amount BIGINT NOT NULL,
    held BIGINT NOT NULL,
    captured BIGINT NOT NULL,
    status TEXT NOT NULL,
    frozen_from TEXT,
    merchant_acquirer_id TEXT,
    merchant_id TEXT,
    merchant_name TEXT,
    plan_kind TEXT NOT NULL,
    plan_id TEXT,
    funding_hold_id TEXT,
    valid_until BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    version BIGINT NOT NULL
);
CREATE INDEX cards_cardholder ON cards (cardholder_id, id);
CREATE INDEX cards_valid_until ON cards (status, valid_until);

CREATE TABLE card_transitions (
    id {serial},
    card_id TEXT NOT NULL REFERENCES cards (id),
    from_status TEXT NOT NULL,
    to_status TEXT NOT NULL,
    reason TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX card_transitions_card ON card_transitions (card_id);

CREATE TABLE authorizations (
    id TEXT PRIMARY KEY,
    card_id TEXT REFERENCES cards (id),
    cardholder_id TEXT REFERENCES cardholders (id),
    kind TEXT NOT NULL,
    amount BIGINT NOT NULL,
    currency TEXT NOT NULL,
    status TEXT NOT NULL,
    response_code TEXT NOT NULL,
    decline_reason TEXT,
    rule TEXT NOT NULL,
    cvv_result TEXT,
    flag TEXT,
    acquirer_id TEXT NOT NULL,
    merchant_id TEXT NOT NULL,
    merchant_name TEXT,
    merchant_city TEXT,
    merchant_country TEXT,
    mcc TEXT NOT NULL,
    stan TEXT,
    rrn TEXT,
    auth_code TEXT,
    transmission_time TEXT,
    hold_transfer_id BIGINT,
    held BIGINT NOT NULL,
    captured BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX authorizations_card ON authorizations (card_id, id);
CREATE INDEX authorizations_cardholder ON authorizations (cardholder_id, id);

-- Every ledger transfer. A resolution (post or void) names the pending transfer it resolves; the unique key makes
-- "each pending transfer resolves at most once" a property of the database itself.
CREATE TABLE ledger_transfers (
    id {serial},
    debit TEXT NOT NULL,
    credit TEXT NOT NULL,
    amount BIGINT NOT NULL CHECK (amount > 0),
    currency TEXT NOT NULL,
    kind TEXT NOT NULL,
    pending_id BIGINT UNIQUE REFERENCES ledger_transfers (id),
    code TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE idempotency_keys (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    request_hash {bytes} NOT NULL,
    state TEXT NOT NULL,
    response_status BIGINT,
    response_body TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (scope, key)
);

-- Append-only: nothing updates or deletes these rows.
CREATE TABLE audit_log (
    id {serial},
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    resource TEXT,
    outcome TEXT NOT NULL,
    origin TEXT,
    detail TEXT
);
