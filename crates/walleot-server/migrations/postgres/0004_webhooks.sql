-- Mandate changes are events too, with ids of the same kind as sessions' events.
ALTER TABLE mandate_events ADD COLUMN id TEXT;
UPDATE mandate_events SET id = 'evt_' || lpad(seq::text, 24, '0');
ALTER TABLE mandate_events ALTER COLUMN id SET NOT NULL;
CREATE UNIQUE INDEX mandate_events_by_id ON mandate_events (id);

-- Where merchants are told of their events, and each event's delivery to each of them.
-- `session_events` and `mandate_events` are the outbox: they are written with every
-- change, and the delivery worker hands their rows above an endpoint's floors to the
-- endpoint, as rows of `webhook_deliveries`; so a payment writes nothing more for
-- webhooks.
CREATE TABLE webhook_endpoints (
    seq             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id              TEXT NOT NULL UNIQUE,
    merchant_id     TEXT NOT NULL REFERENCES merchants (id),
    livemode        BOOLEAN NOT NULL,
    url             TEXT NOT NULL,
    -- Space-separated event types; NULL for every type.
    events          TEXT,
    secret          TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('enabled', 'disabled', 'deleted')),
    disabled_reason TEXT,
    -- When the first of the failures since the last success happened.
    failing_since   BIGINT,
    -- Every event at or below this `session_events.seq` (`mandate_events.seq`) has its
    -- delivery row.
    outbox_floor    BIGINT NOT NULL,
    mandate_floor   BIGINT NOT NULL,
    created_at      BIGINT NOT NULL
);

CREATE INDEX webhook_endpoints_by_owner ON webhook_endpoints (merchant_id, livemode, seq);

CREATE TABLE webhook_deliveries (
    endpoint_id     TEXT NOT NULL REFERENCES webhook_endpoints (id),
    -- Of `session_events` or `mandate_events`.
    event_id        TEXT NOT NULL,
    -- What is posted: the event as `GET /v1/events` lists it.
    body            TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        BIGINT NOT NULL,
    next_attempt_at BIGINT,
    -- A worker is posting it until then; after, another may take it over.
    leased_until    BIGINT,
    last_error      TEXT,
    updated_at      BIGINT NOT NULL,
    PRIMARY KEY (endpoint_id, event_id)
);

CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';
