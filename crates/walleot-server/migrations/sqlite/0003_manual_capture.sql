-- Manual capture: a session created with capture "manual" holds the payer's funds when
-- approved (a pending transfer); the merchant then captures or releases them.

ALTER TABLE sessions ADD COLUMN capture_method TEXT NOT NULL DEFAULT 'automatic'
    CHECK (capture_method IN ('automatic', 'manual'));
-- NULL until paid with manual capture; then held, and later captured or released
ALTER TABLE sessions ADD COLUMN capture_status TEXT
    CHECK (capture_status IN ('held', 'captured', 'released'));
ALTER TABLE sessions ADD COLUMN hold_transfer_id TEXT REFERENCES transfers (id);
