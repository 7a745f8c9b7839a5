-- Web app sessions. Only a keyed hash of the session token is stored; the token lives in the browser's cookie.
-- `csrf` is the token every form of the session carries.
CREATE TABLE web_sessions (
    token_hash {bytes} PRIMARY KEY,
    cardholder_id TEXT NOT NULL REFERENCES cardholders (id),
    csrf TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL
);
CREATE INDEX web_sessions_cardholder ON web_sessions (cardholder_id);

-- Sign-in lockout: failed attempts in a row, and until when the account refuses sign-ins.
ALTER TABLE cardholders ADD COLUMN failed_sign_ins BIGINT NOT NULL DEFAULT 0;
ALTER TABLE cardholders ADD COLUMN locked_until BIGINT;
