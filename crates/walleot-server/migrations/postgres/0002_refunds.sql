-- What moved to the merchant (NULL until captured; less than `amount` after a metered
-- capture), what went back to the payer since, and in how many refunds.
ALTER TABLE sessions ADD COLUMN amount_captured BIGINT
    CHECK (amount_captured > 0 AND amount_captured <= amount);
ALTER TABLE sessions ADD COLUMN amount_refunded BIGINT NOT NULL DEFAULT 0
    CHECK (amount_refunded >= 0 AND amount_refunded <= COALESCE(amount_captured, 0));
ALTER TABLE sessions ADD COLUMN refund_count BIGINT NOT NULL DEFAULT 0;

-- Sessions paid before: under automatic capture, or captured, the whole amount moved.
UPDATE sessions SET amount_captured = amount
 WHERE status = 'paid' AND (capture_status IS NULL OR capture_status = 'captured');

-- Money given back to the payer of a paid session, each by its own ledger transfer.
CREATE TABLE refunds (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id          TEXT NOT NULL UNIQUE,
    session_id  TEXT NOT NULL REFERENCES sessions (id),
    amount      BIGINT NOT NULL CHECK (amount > 0),
    currency    TEXT NOT NULL,
    reason      TEXT CHECK (reason IN ('requested_by_customer', 'duplicate', 'tool_failed', 'other')),
    transfer_id TEXT NOT NULL REFERENCES transfers (id),
    created_at  BIGINT NOT NULL
);

CREATE INDEX refunds_by_session ON refunds (session_id, seq);

CREATE TRIGGER refunds_append_only BEFORE UPDATE OR DELETE ON refunds
    FOR EACH ROW EXECUTE FUNCTION walleot_refuse_change();
