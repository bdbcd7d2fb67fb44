-- The Ed25519 keys that sign receipts: the newest (highest `seq`) signs, every one
-- stays published so that older receipts still verify. `seed` is the 32-byte private
-- key.
CREATE TABLE signing_keys (
    seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kid        TEXT NOT NULL UNIQUE,
    seed       BYTEA NOT NULL CHECK (length(seed) = 32),
    created_at BIGINT NOT NULL
);
