-- Open holds, oldest first, for the hold-expiry job (a partial index: only rows still holding money).
CREATE INDEX authorizations_open_holds ON authorizations (created_at) WHERE held > 0;
