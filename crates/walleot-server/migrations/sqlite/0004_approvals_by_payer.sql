-- The hourly limit of payments without a second factor counts a payer's recent
-- approvals on every such payment.
CREATE INDEX approvals_by_payer ON approvals (payer_id, created_at);
