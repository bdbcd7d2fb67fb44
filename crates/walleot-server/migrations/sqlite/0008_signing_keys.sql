-- The Ed25519 keys that sign receipts: the newest (highest `seq`) signs, every one
-- stays published so that older receipts still verify. `seed` is the 32-byte private
-- key.
CREATE TABLE signing_keys (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    kid        TEXT NOT NULL UNIQUE,
    seed       BLOB NOT NULL CHECK (length(seed) = 32),
    created_at INTEGER NOT NULL
) STRICT;
