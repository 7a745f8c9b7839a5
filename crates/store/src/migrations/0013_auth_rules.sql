-- The issuer's authorization rules. A rule's row holds its current version and mode, every version is kept, and
-- each change makes a new rule set: the rules in force (id, version, mode in rule order), which every decision
-- names by its version.
CREATE TABLE auth_rules (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    version BIGINT NOT NULL,
    mode TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE TABLE auth_rule_versions (
    rule_id TEXT NOT NULL REFERENCES auth_rules (id),
    version BIGINT NOT NULL,
    name TEXT NOT NULL,
    mode TEXT NOT NULL,
    scope TEXT NOT NULL,
    body TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (rule_id, version)
);
CREATE TABLE auth_rule_sets (
    version BIGINT PRIMARY KEY,
    rules TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
-- A backtest: a rule version replayed over the decisions of a window, as a job.
CREATE TABLE backtests (
    id TEXT PRIMARY KEY,
    rule_id TEXT NOT NULL REFERENCES auth_rules (id),
    version BIGINT NOT NULL,
    start_at BIGINT NOT NULL,
    end_at BIGINT NOT NULL,
    status TEXT NOT NULL,
    results TEXT,
    created_at BIGINT NOT NULL,
    completed_at BIGINT
);
CREATE INDEX backtests_rule ON backtests (rule_id, id);
-- A velocity limit of amount adds up the cardholder's approvals: the amount joins the covering index.
CREATE INDEX authorizations_cardholder_history_amount ON authorizations
    (cardholder_id, created_at, kind, response_code, decline_reason, amount);
DROP INDEX authorizations_cardholder_history;
-- The issuer's decision endpoint: at most one is enabled. Its signing secret is encrypted as webhook secrets are.
CREATE TABLE decision_endpoints (
    id TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    timeout_ms BIGINT NOT NULL,
    secret_version BIGINT NOT NULL,
    secret_ciphertext {bytes} NOT NULL,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    disabled_at BIGINT
)
