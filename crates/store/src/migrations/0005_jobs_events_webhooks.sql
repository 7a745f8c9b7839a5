-- Work with side effects outside the database (funding-gateway calls, webhook deliveries), written in the
-- transaction of the change that needs it and run by the job runner. `dedupe_key` makes enqueueing idempotent;
-- a lease (`leased_until`) keeps two runners off one job; after its last attempt a job is `dead` until an operator
-- retries it.
CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    dedupe_key TEXT NOT NULL UNIQUE,
    payload TEXT NOT NULL,
    status TEXT NOT NULL,
    run_at BIGINT NOT NULL,
    attempts BIGINT NOT NULL,
    last_error TEXT,
    leased_by TEXT,
    leased_until BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX jobs_due ON jobs (status, run_at);

-- Everything that happened, for webhooks and `GET /v1/events`: written in the transaction of the change
-- (an outbox). Events of the authorization path are thin — `subject` names the authorization or card and `data`
-- is NULL, the object being read when the event is — so the path writes one small row per decision; other events
-- carry their `data`. Ids sort by creation time; each webhook endpoint keeps a cursor into them.
CREATE TABLE events (
    id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    subject TEXT,
    data TEXT,
    created_at BIGINT NOT NULL
);

-- Where events are delivered. The signing secret is stored encrypted under the card-number data key; `cursor` is
-- the id of the last event turned into deliveries for this endpoint.
CREATE TABLE webhook_endpoints (
    id TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    events TEXT NOT NULL,
    cursor TEXT NOT NULL,
    secret_version BIGINT NOT NULL,
    secret_ciphertext {bytes} NOT NULL,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- When the plan next needs the job runner (a collection, retry, late fee, charge-off or the 14-day adjustment);
-- NULL when nothing is scheduled.
ALTER TABLE plans ADD COLUMN next_run_at BIGINT;
CREATE INDEX plans_next_run ON plans (next_run_at);

-- Pay now: what has been charged to the funding card for this card so far (the true-up target is what it spent).
ALTER TABLE cards ADD COLUMN funding_charged BIGINT NOT NULL DEFAULT 0;
