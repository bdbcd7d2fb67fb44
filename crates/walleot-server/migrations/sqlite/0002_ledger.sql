-- The double-entry ledger, payers and their second factors, vouchers.
--
-- Every movement of money is a transfer that debits one account and credits another by
-- the same integer amount. A transfer is pending (funds reserved), then posted, voided
-- or lapsed, once; otherwise transfers never change. Accounts keep running totals of
-- their transfers; `walleot ledger verify` recomputes them.

CREATE TABLE accounts (
    id             TEXT PRIMARY KEY,
    kind           TEXT NOT NULL CHECK (kind IN ('wallet', 'merchant', 'sandbox', 'voucher')),
    -- payer id for wallets, merchant id for merchants, '' for the service's own accounts
    owner_id       TEXT NOT NULL,
    currency       TEXT NOT NULL,
    livemode       INTEGER NOT NULL CHECK (livemode IN (0, 1)),
    debits_posted  INTEGER NOT NULL DEFAULT 0 CHECK (debits_posted >= 0),
    credits_posted INTEGER NOT NULL DEFAULT 0 CHECK (credits_posted >= 0),
    debits_pending INTEGER NOT NULL DEFAULT 0 CHECK (debits_pending >= 0),
    credits_pending INTEGER NOT NULL DEFAULT 0 CHECK (credits_pending >= 0),
    -- 1: debits, posted and pending, may never exceed posted credits (wallets)
    no_overdraft   INTEGER NOT NULL CHECK (no_overdraft IN (0, 1)),
    created_at     INTEGER NOT NULL,
    UNIQUE (kind, owner_id, currency, livemode),
    CHECK (no_overdraft = 0 OR debits_posted + debits_pending <= credits_posted)
) STRICT;

CREATE TABLE transfers (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    id             TEXT NOT NULL UNIQUE,
    debit_account  TEXT NOT NULL REFERENCES accounts (id),
    credit_account TEXT NOT NULL REFERENCES accounts (id),
    amount         INTEGER NOT NULL CHECK (amount > 0),
    currency       TEXT NOT NULL,
    livemode       INTEGER NOT NULL CHECK (livemode IN (0, 1)),
    state          TEXT NOT NULL CHECK (state IN ('pending', 'posted', 'voided', 'lapsed')),
    kind           TEXT NOT NULL,
    session_id     TEXT REFERENCES sessions (id),
    memo           TEXT,
    created_at     INTEGER NOT NULL,
    -- a pending transfer lapses (its funds return) at this instant
    lapses_at      INTEGER,
    resolved_at    INTEGER,
    CHECK (debit_account <> credit_account)
) STRICT;

CREATE INDEX transfers_by_debit ON transfers (debit_account, seq);
CREATE INDEX transfers_by_credit ON transfers (credit_account, seq);
CREATE INDEX transfers_by_session ON transfers (session_id);
CREATE INDEX transfers_pending_by_lapse ON transfers (lapses_at) WHERE state = 'pending';

-- Only a pending transfer may change, only its state and resolution time, only once.
CREATE TRIGGER transfers_immutable BEFORE UPDATE ON transfers
WHEN OLD.state <> 'pending'
  OR NEW.state = 'pending'
  OR NEW.id IS NOT OLD.id OR NEW.debit_account IS NOT OLD.debit_account
  OR NEW.credit_account IS NOT OLD.credit_account OR NEW.amount IS NOT OLD.amount
  OR NEW.currency IS NOT OLD.currency OR NEW.livemode IS NOT OLD.livemode
  OR NEW.kind IS NOT OLD.kind OR NEW.session_id IS NOT OLD.session_id
  OR NEW.created_at IS NOT OLD.created_at
BEGIN
    SELECT RAISE(ABORT, 'transfers are immutable once resolved');
END;

CREATE TRIGGER transfers_no_delete BEFORE DELETE ON transfers
BEGIN
    SELECT RAISE(ABORT, 'transfers are never deleted');
END;

CREATE TABLE payers (
    id                    TEXT PRIMARY KEY,
    created_at            INTEGER NOT NULL,
    failed_attempts       INTEGER NOT NULL DEFAULT 0,
    locked_until          INTEGER NOT NULL DEFAULT 0
) STRICT;

-- The payer's auto-approve threshold per currency; absent means the default.
CREATE TABLE payer_thresholds (
    payer_id TEXT NOT NULL REFERENCES payers (id),
    currency TEXT NOT NULL,
    amount   INTEGER NOT NULL CHECK (amount >= 0),
    PRIMARY KEY (payer_id, currency)
) STRICT;

CREATE TABLE passkeys (
    credential_id BLOB PRIMARY KEY,
    payer_id      TEXT NOT NULL REFERENCES payers (id),
    public_key    BLOB NOT NULL,
    sign_count    INTEGER NOT NULL,
    created_at    INTEGER NOT NULL
) STRICT;

CREATE TABLE totp_secrets (
    payer_id    TEXT PRIMARY KEY REFERENCES payers (id),
    secret      BLOB NOT NULL,
    confirmed   INTEGER NOT NULL CHECK (confirmed IN (0, 1)),
    -- the last time step accepted, so that a code is used once
    last_step   INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL
) STRICT;

-- Browser sessions of payers; the cookie holds the token, this table its hash.
CREATE TABLE payer_logins (
    token_hash  TEXT PRIMARY KEY,
    payer_id    TEXT NOT NULL REFERENCES payers (id),
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
) STRICT;

-- Open WebAuthn ceremonies: each challenge is used at most once.
CREATE TABLE challenges (
    id          TEXT PRIMARY KEY,
    purpose     TEXT NOT NULL CHECK (purpose IN ('register', 'approve')),
    payer_id    TEXT,
    session_id  TEXT,
    challenge   BLOB NOT NULL,
    nonce       BLOB NOT NULL,
    expires_at  INTEGER NOT NULL
) STRICT;

-- Why each session was paid: automatically under the threshold, or with which factor;
-- for a passkey, the assertion whose challenge binds it to this charge.
CREATE TABLE approvals (
    session_id  TEXT PRIMARY KEY REFERENCES sessions (id),
    payer_id    TEXT NOT NULL REFERENCES payers (id),
    method      TEXT NOT NULL CHECK (method IN ('auto', 'passkey', 'totp', 'test_helper')),
    evidence    TEXT,
    created_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE vouchers (
    id          TEXT PRIMARY KEY,
    code_hash   TEXT NOT NULL UNIQUE,
    amount      INTEGER NOT NULL CHECK (amount > 0),
    currency    TEXT NOT NULL,
    livemode    INTEGER NOT NULL CHECK (livemode IN (0, 1)),
    created_at  INTEGER NOT NULL,
    redeemed_by TEXT REFERENCES payers (id),
    redeemed_at INTEGER
) STRICT;
