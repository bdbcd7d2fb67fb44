-- The whole schema of the service on PostgreSQL: the same tables, columns and rules as
-- the SQLite migrations reach, in one step. Instants are Unix milliseconds; amounts are
-- integer minor units.

CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value BYTEA NOT NULL
);

CREATE TABLE merchants (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    merchant_id TEXT NOT NULL REFERENCES merchants (id),
    livemode    BOOLEAN NOT NULL,
    hash        TEXT NOT NULL UNIQUE,
    prefix      TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);

-- The double-entry ledger: every movement of money is a transfer that debits one account
-- and credits another by the same amount. Accounts keep running totals of their
-- transfers; `walleot ledger verify` recomputes them.
CREATE TABLE accounts (
    id              TEXT PRIMARY KEY,
    kind            TEXT NOT NULL CHECK (kind IN ('wallet', 'merchant', 'sandbox', 'voucher')),
    -- payer id for wallets, merchant id for merchants, '' for the service's own accounts
    owner_id        TEXT NOT NULL,
    currency        TEXT NOT NULL,
    livemode        BOOLEAN NOT NULL,
    debits_posted   BIGINT NOT NULL DEFAULT 0 CHECK (debits_posted >= 0),
    credits_posted  BIGINT NOT NULL DEFAULT 0 CHECK (credits_posted >= 0),
    debits_pending  BIGINT NOT NULL DEFAULT 0 CHECK (debits_pending >= 0),
    credits_pending BIGINT NOT NULL DEFAULT 0 CHECK (credits_pending >= 0),
    -- debits, posted and pending, may never exceed posted credits (wallets)
    no_overdraft    BOOLEAN NOT NULL,
    created_at      BIGINT NOT NULL,
    UNIQUE (kind, owner_id, currency, livemode),
    CHECK (NOT no_overdraft OR debits_posted + debits_pending <= credits_posted)
);

CREATE TABLE payers (
    id              TEXT PRIMARY KEY,
    created_at      BIGINT NOT NULL,
    failed_attempts BIGINT NOT NULL DEFAULT 0,
    locked_until    BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE sessions (
    seq              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id               TEXT NOT NULL UNIQUE,
    merchant_id      TEXT NOT NULL REFERENCES merchants (id),
    livemode         BOOLEAN NOT NULL,
    amount           BIGINT NOT NULL CHECK (amount > 0),
    currency         TEXT NOT NULL,
    description      TEXT,
    status           TEXT NOT NULL
        CHECK (status IN ('pending', 'paid', 'failed', 'expired', 'cancelled')),
    created_at       BIGINT NOT NULL,
    expires_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    capture_method   TEXT NOT NULL DEFAULT 'automatic'
        CHECK (capture_method IN ('automatic', 'manual')),
    -- NULL until paid with manual capture; then held, and later captured or released
    capture_status   TEXT CHECK (capture_status IN ('held', 'captured', 'released')),
    hold_transfer_id TEXT,
    -- the merchant's labels, a JSON object of strings; NULL when none
    metadata         TEXT,
    customer         TEXT,
    mandate_id       TEXT,
    mandate_period   BIGINT
);

CREATE INDEX sessions_by_owner ON sessions (merchant_id, livemode, seq);
CREATE INDEX sessions_pending_by_expiry ON sessions (expires_at) WHERE status = 'pending';
CREATE INDEX sessions_by_mandate ON sessions (mandate_id) WHERE mandate_id IS NOT NULL;

CREATE TABLE session_events (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id          TEXT NOT NULL UNIQUE,
    session_id  TEXT NOT NULL REFERENCES sessions (id),
    type        TEXT NOT NULL,
    from_status TEXT,
    to_status   TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE INDEX session_events_by_session ON session_events (session_id, seq);

CREATE FUNCTION walleot_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
END
$$;

CREATE TRIGGER session_events_append_only BEFORE UPDATE OR DELETE ON session_events
    FOR EACH ROW EXECUTE FUNCTION walleot_refuse_change();

CREATE TABLE idempotency_keys (
    scope           TEXT NOT NULL,
    key             TEXT NOT NULL,
    fingerprint     TEXT NOT NULL,
    response_status BIGINT,
    response_body   BYTEA,
    created_at      BIGINT NOT NULL,
    locked_at       BIGINT NOT NULL,
    PRIMARY KEY (scope, key)
);

CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);

CREATE TABLE transfers (
    seq            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id             TEXT NOT NULL UNIQUE,
    debit_account  TEXT NOT NULL REFERENCES accounts (id),
    credit_account TEXT NOT NULL REFERENCES accounts (id),
    amount         BIGINT NOT NULL CHECK (amount > 0),
    currency       TEXT NOT NULL,
    livemode       BOOLEAN NOT NULL,
    state          TEXT NOT NULL CHECK (state IN ('pending', 'posted', 'voided', 'lapsed')),
    kind           TEXT NOT NULL,
    session_id     TEXT REFERENCES sessions (id),
    memo           TEXT,
    created_at     BIGINT NOT NULL,
    -- a pending transfer lapses (its funds return) at this instant
    lapses_at      BIGINT,
    resolved_at    BIGINT,
    CHECK (debit_account <> credit_account)
);

CREATE INDEX transfers_by_debit ON transfers (debit_account, seq);
CREATE INDEX transfers_by_credit ON transfers (credit_account, seq);
CREATE INDEX transfers_by_session ON transfers (session_id);
CREATE INDEX transfers_pending_by_lapse ON transfers (lapses_at) WHERE state = 'pending';

ALTER TABLE sessions ADD FOREIGN KEY (hold_transfer_id) REFERENCES transfers (id);

-- Only a pending transfer may change, only its state and resolution time, only once.
CREATE FUNCTION walleot_transfer_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'transfers are never deleted';
    END IF;
    IF OLD.state <> 'pending' OR NEW.state = 'pending'
       OR NEW.id IS DISTINCT FROM OLD.id
       OR NEW.debit_account IS DISTINCT FROM OLD.debit_account
       OR NEW.credit_account IS DISTINCT FROM OLD.credit_account
       OR NEW.amount IS DISTINCT FROM OLD.amount
       OR NEW.currency IS DISTINCT FROM OLD.currency
       OR NEW.livemode IS DISTINCT FROM OLD.livemode
       OR NEW.kind IS DISTINCT FROM OLD.kind
       OR NEW.session_id IS DISTINCT FROM OLD.session_id
       OR NEW.created_at IS DISTINCT FROM OLD.created_at THEN
        RAISE EXCEPTION 'transfers are immutable once resolved';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER transfers_immutable BEFORE UPDATE OR DELETE ON transfers
    FOR EACH ROW EXECUTE FUNCTION walleot_transfer_immutable();

-- The payer's auto-approve threshold per currency; absent means the default.
CREATE TABLE payer_thresholds (
    payer_id TEXT NOT NULL REFERENCES payers (id),
    currency TEXT NOT NULL,
    amount   BIGINT NOT NULL CHECK (amount >= 0),
    PRIMARY KEY (payer_id, currency)
);

CREATE TABLE passkeys (
    credential_id BYTEA PRIMARY KEY,
    payer_id      TEXT NOT NULL REFERENCES payers (id),
    public_key    BYTEA NOT NULL,
    sign_count    BIGINT NOT NULL,
    created_at    BIGINT NOT NULL
);

CREATE TABLE totp_secrets (
    payer_id   TEXT PRIMARY KEY REFERENCES payers (id),
    secret     BYTEA NOT NULL,
    confirmed  BOOLEAN NOT NULL,
    -- the last time step accepted, so that a code is used once
    last_step  BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);

-- Browser sessions of payers; the cookie holds the token, this table its hash.
CREATE TABLE payer_logins (
    token_hash TEXT PRIMARY KEY,
    payer_id   TEXT NOT NULL REFERENCES payers (id),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

-- Open WebAuthn ceremonies: each challenge is used at most once.
CREATE TABLE challenges (
    id         TEXT PRIMARY KEY,
    purpose    TEXT NOT NULL CHECK (purpose IN ('register', 'approve', 'grant')),
    payer_id   TEXT,
    session_id TEXT,
    challenge  BYTEA NOT NULL,
    nonce      BYTEA NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE INDEX challenges_by_expiry ON challenges (expires_at);

-- Why each session was paid: automatically under the threshold, or with which factor.
CREATE TABLE approvals (
    session_id TEXT PRIMARY KEY REFERENCES sessions (id),
    payer_id   TEXT NOT NULL REFERENCES payers (id),
    method     TEXT NOT NULL
        CHECK (method IN ('auto', 'passkey', 'totp', 'test_helper', 'mandate')),
    evidence   TEXT,
    created_at BIGINT NOT NULL
);

CREATE INDEX approvals_by_payer ON approvals (payer_id, created_at);

CREATE TABLE vouchers (
    id          TEXT PRIMARY KEY,
    code_hash   TEXT NOT NULL UNIQUE,
    amount      BIGINT NOT NULL CHECK (amount > 0),
    currency    TEXT NOT NULL,
    livemode    BOOLEAN NOT NULL,
    created_at  BIGINT NOT NULL,
    redeemed_by TEXT REFERENCES payers (id),
    redeemed_at BIGINT
);

-- Mandates: a payer lets a merchant charge one customer reference without asking,
-- within limits (NULL: the limit does not apply), until `expires_at` or until revoked.
CREATE TABLE mandates (
    seq            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id             TEXT NOT NULL UNIQUE,
    merchant_id    TEXT NOT NULL REFERENCES merchants (id),
    livemode       BOOLEAN NOT NULL,
    customer       TEXT NOT NULL,
    payer_id       TEXT NOT NULL REFERENCES payers (id),
    currency       TEXT NOT NULL,
    per_call_limit BIGINT CHECK (per_call_limit > 0),
    period         TEXT CHECK (period IN ('day', 'week', 'month')),
    period_limit   BIGINT CHECK (period_limit > 0),
    total_limit    BIGINT CHECK (total_limit > 0),
    -- the session whose checkout the payer granted it from
    granted_with   TEXT NOT NULL REFERENCES sessions (id),
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    revoked_at     BIGINT,
    -- payments held or captured under the mandate, less those released or lapsed
    spent_total    BIGINT NOT NULL DEFAULT 0 CHECK (spent_total >= 0),
    CHECK ((period IS NULL) = (period_limit IS NULL))
);

ALTER TABLE sessions ADD FOREIGN KEY (mandate_id) REFERENCES mandates (id);

CREATE INDEX mandates_by_customer ON mandates (merchant_id, livemode, customer, currency);
CREATE INDEX mandates_by_merchant ON mandates (merchant_id, livemode, seq);
CREATE INDEX mandates_by_payer ON mandates (payer_id, seq);
CREATE INDEX mandates_unrevoked_by_expiry ON mandates (expires_at) WHERE revoked_at IS NULL;

-- What was spent under a mandate in each of its periods (by the period's start).
CREATE TABLE mandate_spending (
    mandate_id   TEXT NOT NULL REFERENCES mandates (id),
    period_start BIGINT NOT NULL,
    spent        BIGINT NOT NULL CHECK (spent >= 0),
    PRIMARY KEY (mandate_id, period_start)
);

-- Every status change of a mandate, in order.
CREATE TABLE mandate_events (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    mandate_id  TEXT NOT NULL REFERENCES mandates (id),
    type        TEXT NOT NULL,
    from_status TEXT,
    to_status   TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE INDEX mandate_events_by_mandate ON mandate_events (mandate_id, seq);
-- A mandate expires once, whichever instances record it.
CREATE UNIQUE INDEX mandate_events_expired_once ON mandate_events (mandate_id)
    WHERE type = 'mandate.expired';
