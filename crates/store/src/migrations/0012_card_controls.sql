-- A card's pause and its spending controls (merchant categories and countries, as JSON; NULL for none), which the
-- authorization path reads with the card.
ALTER TABLE cards ADD COLUMN paused INTEGER NOT NULL DEFAULT 0;
ALTER TABLE cards ADD COLUMN spending_controls TEXT;
