-- The issuer's staff: operator accounts for the console (`/ops`). `role` is `viewer` (reads) or `admin` (also
-- acts: unfreeze, close, lift restrictions, retry jobs). Their sessions are kept apart from cardholders'.
CREATE TABLE operators (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    failed_sign_ins BIGINT NOT NULL DEFAULT 0,
    locked_until BIGINT,
    created_at BIGINT NOT NULL
);

CREATE TABLE operator_sessions (
    token_hash {bytes} PRIMARY KEY,
    operator_id TEXT NOT NULL REFERENCES operators (id),
    csrf TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL
);
