-- Mandates: a payer lets a merchant charge one customer reference without asking,
-- within limits (minor units of `currency`; NULL: the limit does not apply), until
-- `expires_at` or until revoked.
CREATE TABLE mandates (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    id             TEXT NOT NULL UNIQUE,
    merchant_id    TEXT NOT NULL REFERENCES merchants (id),
    livemode       INTEGER NOT NULL,
    customer       TEXT NOT NULL,
    payer_id       TEXT NOT NULL REFERENCES payers (id),
    currency       TEXT NOT NULL,
    per_call_limit INTEGER CHECK (per_call_limit > 0),
    period         TEXT CHECK (period IN ('day', 'week', 'month')),
    period_limit   INTEGER CHECK (period_limit > 0),
    total_limit    INTEGER CHECK (total_limit > 0),
    -- The session whose checkout the payer granted it from.
    granted_with   TEXT NOT NULL REFERENCES sessions (id),
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    revoked_at     INTEGER,
    -- Payments held or captured under the mandate, less those released or lapsed.
    spent_total    INTEGER NOT NULL DEFAULT 0 CHECK (spent_total >= 0),
    CHECK ((period IS NULL) = (period_limit IS NULL))
) STRICT;

-- What was spent under a mandate in each of its periods (by the period's start), kept
-- with every payment and give-back so that checking a budget reads one row.
CREATE TABLE mandate_spending (
    mandate_id   TEXT NOT NULL REFERENCES mandates (id),
    period_start INTEGER NOT NULL,
    spent        INTEGER NOT NULL CHECK (spent >= 0),
    PRIMARY KEY (mandate_id, period_start)
) STRICT;

CREATE INDEX mandates_by_customer ON mandates (merchant_id, livemode, customer, currency);
CREATE INDEX mandates_by_merchant ON mandates (merchant_id, livemode, seq);
CREATE INDEX mandates_by_payer ON mandates (payer_id, seq);

-- Every status change of a mandate, in order.
CREATE TABLE mandate_events (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    mandate_id  TEXT NOT NULL REFERENCES mandates (id),
    type        TEXT NOT NULL,
    from_status TEXT,
    to_status   TEXT NOT NULL,
    created_at  INTEGER NOT NULL
) STRICT;

CREATE INDEX mandate_events_by_mandate ON mandate_events (mandate_id, seq);

-- The merchant's customer reference of a session, the mandate that paid it, and the
-- start of the mandate's period it was counted in.
ALTER TABLE sessions ADD COLUMN customer TEXT;
ALTER TABLE sessions ADD COLUMN mandate_id TEXT REFERENCES mandates (id);
ALTER TABLE sessions ADD COLUMN mandate_period INTEGER;
CREATE INDEX sessions_by_mandate ON sessions (mandate_id) WHERE mandate_id IS NOT NULL;

-- A payment under a mandate is approved by it: `mandate` joins the approval methods
-- (SQLite cannot alter a CHECK, so the table is rebuilt with its rows).
CREATE TABLE approvals_new (
    session_id  TEXT PRIMARY KEY REFERENCES sessions (id),
    payer_id    TEXT NOT NULL REFERENCES payers (id),
    method      TEXT NOT NULL
        CHECK (method IN ('auto', 'passkey', 'totp', 'test_helper', 'mandate')),
    evidence    TEXT,
    created_at  INTEGER NOT NULL
) STRICT;
INSERT INTO approvals_new (session_id, payer_id, method, evidence, created_at)
    SELECT session_id, payer_id, method, evidence, created_at FROM approvals;
DROP TABLE approvals;
ALTER TABLE approvals_new RENAME TO approvals;
CREATE INDEX approvals_by_payer ON approvals (payer_id, created_at);

-- A mandate is granted with a passkey ceremony of its own: `grant` joins the purposes.
CREATE TABLE challenges_new (
    id          TEXT PRIMARY KEY,
    purpose     TEXT NOT NULL CHECK (purpose IN ('register', 'approve', 'grant')),
    payer_id    TEXT,
    session_id  TEXT,
    challenge   BLOB NOT NULL,
    nonce       BLOB NOT NULL,
    expires_at  INTEGER NOT NULL
) STRICT;
INSERT INTO challenges_new SELECT id, purpose, payer_id, session_id, challenge, nonce, expires_at
    FROM challenges;
DROP TABLE challenges;
ALTER TABLE challenges_new RENAME TO challenges;
