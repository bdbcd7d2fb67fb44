//! Stored rows read back into the domain's records, the same for every database: the
//! column lists the stores select and the mapping of each row (see [`Columns`]).

use super::columns::Columns;
use crate::domain::ledger::{Account, Book, Transfer};
use crate::domain::mandates::{MandateEvent, MandateLimits, MandateRecord, Usage};
use crate::domain::payers::{Approval, Challenge, Passkey, Payer, TotpRecord, Voucher};
use crate::domain::payments::RefundRecord;
use crate::domain::ports::{ApiKeyRecord, Merchant, StoreError};
use crate::domain::receipts::SigningKeyRecord;
use crate::domain::sessions::{SessionEvent, SessionRecord};
use crate::domain::Livemode;
use walleot_api::MandateStatus;

pub(super) const SESSION_COLUMNS: &str = "id, merchant_id, livemode, amount, currency, description, \
                               status, created_at, expires_at, updated_at, capture_method, capture_status, \
                               metadata, customer, mandate_id, mandate_period, \
                               amount_captured, amount_refunded, refund_count";

pub(super) const REFUND_COLUMNS: &str =
    "id, session_id, amount, currency, reason, transfer_id, created_at";

/// The guard of a refund of as many minor units as the placeholder says: the session
/// is paid, and what was captured and not yet refunded covers it, with room for one
/// more refund.
fn refundable_guard(amount: &str) -> String {
    format!(
        "status = 'paid' AND amount_captured IS NOT NULL \
         AND amount_refunded + {amount} <= amount_captured \
         AND refund_count < {}",
        walleot_api::MAX_REFUNDS_PER_SESSION
    )
}

pub(super) static REFUNDABLE_GUARD_SQLITE: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| refundable_guard("?6"));
pub(super) static REFUNDABLE_GUARD_POSTGRES: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| refundable_guard("$10"));

/// A column list with every column named through a table alias (`s.id, s.status, …`),
/// for joins; made once.
pub(super) fn aliased(columns: &str, alias: &str) -> String {
    columns
        .split(',')
        .map(|c| format!("{alias}.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// [`SESSION_COLUMNS`] through the alias `s`.
pub(super) static SESSION_COLUMNS_S: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| aliased(SESSION_COLUMNS, "s"));
/// The transfer columns through the alias `t`.
pub(super) static TRANSFER_COLUMNS_T: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| aliased(TRANSFER_COLUMNS, "t"));

pub(super) fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

/// A stored name of an enum; one the code does not know is corrupt data, never
/// silently read as some default.
pub(super) fn parse_stored<T: std::str::FromStr>(raw: &str, what: &str) -> Result<T, StoreError> {
    raw.parse()
        .map_err(|_| corrupt(format!("unknown {what} `{raw}`")))
}

pub(super) fn session_from_row(row: &impl Columns) -> Result<SessionRecord, StoreError> {
    Ok(SessionRecord {
        id: row.text("id")?,
        merchant_id: row.text("merchant_id")?,
        livemode: row.flag("livemode")?,
        amount: row.int("amount")?,
        currency: row.text("currency")?.parse().map_err(corrupt)?,
        description: row.text_or_null("description")?,
        status: row.text("status")?.parse().map_err(corrupt)?,
        created_at: row.int("created_at")?,
        expires_at: row.int("expires_at")?,
        updated_at: row.int("updated_at")?,
        capture_method: parse_stored(&row.text("capture_method")?, "capture method")?,
        capture_status: row
            .text_or_null("capture_status")?
            .map(|s| parse_stored(&s, "capture status"))
            .transpose()?,
        metadata: match row.text_or_null("metadata")? {
            Some(text) => serde_json::from_str(&text)
                .map_err(|e| corrupt(format!("session metadata: {e}")))?,
            None => Default::default(),
        },
        customer: row.text_or_null("customer")?,
        mandate_id: row.text_or_null("mandate_id")?,
        mandate_period: row.int_or_null("mandate_period")?,
        amount_captured: row.int_or_null("amount_captured")?,
        amount_refunded: row.int("amount_refunded")?,
        refund_count: row.int("refund_count")?,
    })
}

/// The names a query gives the key columns that sessions also have.
pub(super) struct KeyColumns {
    pub(super) id: &'static str,
    pub(super) merchant_id: &'static str,
    pub(super) livemode: &'static str,
    pub(super) created_at: &'static str,
}

/// A key with its merchant's name, and the session of that merchant and mode with the
/// id asked for, if there is one (the status check's one read); `hash` and `session`
/// are the placeholders of the key's hash and the session id. Key columns carry a
/// `key_` prefix where their names are also session columns: read them with
/// [`JOINED_KEY`].
pub(super) fn key_and_session_sql(hash: &str, session: &str) -> String {
    format!(
        "SELECT k.id AS key_id, k.merchant_id AS key_merchant_id, m.name AS merchant_name, \
                k.livemode AS key_livemode, k.hash, k.prefix, k.created_at AS key_created_at, \
                k.revoked_at, {} \
         FROM api_keys k JOIN merchants m ON m.id = k.merchant_id \
         LEFT JOIN sessions s ON s.id = {session} AND s.merchant_id = k.merchant_id \
                             AND s.livemode = k.livemode \
         WHERE k.hash = {hash}",
        *SESSION_COLUMNS_S
    )
}

/// The key columns of [`key_and_session_sql`].
pub(super) const JOINED_KEY: KeyColumns = KeyColumns {
    id: "key_id",
    merchant_id: "key_merchant_id",
    livemode: "key_livemode",
    created_at: "key_created_at",
};

/// A key read on its own, its columns under their names.
pub(super) const KEY: KeyColumns = KeyColumns {
    id: "id",
    merchant_id: "merchant_id",
    livemode: "livemode",
    created_at: "created_at",
};

pub(super) fn key_from_row(
    row: &impl Columns,
    names: &KeyColumns,
) -> Result<ApiKeyRecord, StoreError> {
    Ok(ApiKeyRecord {
        id: row.text(names.id)?,
        merchant_id: row.text(names.merchant_id)?,
        merchant_name: row.text("merchant_name")?,
        mode: Livemode::from_flag(row.flag(names.livemode)?),
        hash: row.text("hash")?,
        prefix: row.text("prefix")?,
        created_at: row.int(names.created_at)?,
        revoked_at: row.int_or_null("revoked_at")?,
    })
}

pub(super) fn merchant_from_row(row: &impl Columns) -> Result<Merchant, StoreError> {
    Ok(Merchant {
        id: row.text("id")?,
        name: row.text("name")?,
        created_at: row.int("created_at")?,
    })
}

pub(super) const ACCOUNT_COLUMNS: &str = "id, kind, owner_id, currency, livemode, debits_posted, \
                               credits_posted, debits_pending, credits_pending";
pub(super) const TRANSFER_COLUMNS: &str =
    "id, debit_account, credit_account, amount, currency, livemode, \
     state, kind, session_id, memo, created_at, lapses_at, resolved_at";

pub(super) fn account_from_row(row: &impl Columns) -> Result<Account, StoreError> {
    Ok(Account {
        id: row.text("id")?,
        kind: parse_stored(&row.text("kind")?, "account kind")?,
        owner_id: row.text("owner_id")?,
        book: Book::new(
            row.text("currency")?.parse().map_err(corrupt)?,
            row.flag("livemode")?,
        ),
        debits_posted: row.int("debits_posted")?,
        credits_posted: row.int("credits_posted")?,
        debits_pending: row.int("debits_pending")?,
        credits_pending: row.int("credits_pending")?,
    })
}

pub(super) fn transfer_from_row(row: &impl Columns) -> Result<Transfer, StoreError> {
    Ok(Transfer {
        id: row.text("id")?,
        debit_account: row.text("debit_account")?,
        credit_account: row.text("credit_account")?,
        amount: row.int("amount")?,
        book: Book::new(
            row.text("currency")?.parse().map_err(corrupt)?,
            row.flag("livemode")?,
        ),
        state: parse_stored(&row.text("state")?, "transfer state")?,
        kind: parse_stored(&row.text("kind")?, "transfer kind")?,
        session_id: row.text_or_null("session_id")?,
        memo: row.text_or_null("memo")?,
        created_at: row.int("created_at")?,
        lapses_at: row.int_or_null("lapses_at")?,
        resolved_at: row.int_or_null("resolved_at")?,
    })
}

pub(super) fn voucher_from_row(row: &impl Columns) -> Result<Voucher, StoreError> {
    Ok(Voucher {
        id: row.text("id")?,
        code_hash: row.text("code_hash")?,
        amount: row.int("amount")?,
        book: Book::new(
            row.text("currency")?.parse().map_err(corrupt)?,
            row.flag("livemode")?,
        ),
        created_at: row.int("created_at")?,
        redeemed_by: row.text_or_null("redeemed_by")?,
        redeemed_at: row.int_or_null("redeemed_at")?,
    })
}

pub(super) fn payer_from_row(row: &impl Columns) -> Result<Payer, StoreError> {
    Ok(Payer {
        id: row.text("id")?,
        created_at: row.int("created_at")?,
        failed_attempts: row.int("failed_attempts")?,
        locked_until: row.int("locked_until")?,
    })
}

pub(super) fn passkey_from_row(row: &impl Columns) -> Result<Passkey, StoreError> {
    Ok(Passkey {
        credential_id: row.bytes("credential_id")?,
        payer_id: row.text("payer_id")?,
        public_key: row.bytes("public_key")?,
        sign_count: row.int("sign_count")?,
        created_at: row.int("created_at")?,
    })
}

pub(super) fn challenge_from_row(row: &impl Columns) -> Result<Challenge, StoreError> {
    Ok(Challenge {
        id: row.text("id")?,
        purpose: parse_stored(&row.text("purpose")?, "challenge purpose")?,
        payer_id: row.text_or_null("payer_id")?,
        session_id: row.text_or_null("session_id")?,
        challenge: row.bytes("challenge")?,
        nonce: row.bytes("nonce")?,
        expires_at: row.int("expires_at")?,
    })
}

pub(super) const PAYER_COLUMNS: &str = "id, created_at, failed_attempts, locked_until";

pub(super) const PASSKEY_COLUMNS: &str =
    "credential_id, payer_id, public_key, sign_count, created_at";

pub(super) const MANDATE_COLUMNS: &str =
    "id, merchant_id, livemode, customer, payer_id, currency, \
                               per_call_limit, period, period_limit, total_limit, granted_with, \
                               created_at, expires_at, revoked_at";

pub(super) fn mandate_from_row(row: &impl Columns) -> Result<MandateRecord, StoreError> {
    let period = row
        .text_or_null("period")?
        .map(|p| parse_stored(&p, "mandate period"))
        .transpose()?;
    let period = match (period, row.int_or_null("period_limit")?) {
        (Some(period), Some(limit)) => Some((period, limit)),
        (None, None) => None,
        _ => return Err(corrupt("a mandate period without its limit")),
    };
    let limits = MandateLimits::new(
        row.int_or_null("per_call_limit")?,
        period,
        row.int_or_null("total_limit")?,
    )
    .map_err(|e| corrupt(format!("mandate limits: {e}")))?;
    Ok(MandateRecord {
        id: row.text("id")?,
        merchant_id: row.text("merchant_id")?,
        livemode: row.flag("livemode")?,
        customer: row.text("customer")?,
        payer_id: row.text("payer_id")?,
        currency: row.text("currency")?.parse().map_err(corrupt)?,
        limits,
        granted_with: row.text("granted_with")?,
        created_at: row.int("created_at")?,
        expires_at: row.int("expires_at")?,
        revoked_at: row.int_or_null("revoked_at")?,
    })
}

/// The names of mandate events, as stored.
pub(super) fn event_kind(raw: &str) -> Result<&'static str, StoreError> {
    ["mandate.granted", "mandate.revoked", "mandate.expired"]
        .into_iter()
        .find(|known| *known == raw)
        .ok_or_else(|| corrupt(format!("unknown mandate event `{raw}`")))
}

/// A row of a mandate usage read (`total`, `in_period`); callers read a missing row as nothing spent.
pub(super) fn usage_from_row(
    row: &impl Columns,
    period_start: Option<i64>,
) -> Result<Usage, StoreError> {
    Ok(Usage {
        in_period: match period_start {
            Some(_) => row.int("in_period")?,
            None => 0,
        },
        total: row.int("total")?,
    })
}

pub(super) const VOUCHER_COLUMNS: &str =
    "id, code_hash, amount, currency, livemode, created_at, redeemed_by, redeemed_at";
pub(super) const CHALLENGE_COLUMNS: &str =
    "id, purpose, payer_id, session_id, challenge, nonce, expires_at";
pub(super) const TOTP_COLUMNS: &str = "payer_id, secret, confirmed, last_step, created_at";
pub(super) const APPROVAL_COLUMNS: &str = "session_id, payer_id, method, evidence, created_at";
pub(super) const SESSION_EVENT_COLUMNS: &str =
    "id, session_id, type, from_status, to_status, created_at";
pub(super) const MANDATE_EVENT_COLUMNS: &str =
    "id, mandate_id, type, from_status, to_status, created_at";

pub(super) fn totp_from_row(row: &impl Columns) -> Result<TotpRecord, StoreError> {
    Ok(TotpRecord {
        payer_id: row.text("payer_id")?,
        secret: row.bytes("secret")?,
        confirmed: row.flag("confirmed")?,
        last_step: row.int("last_step")?,
        created_at: row.int("created_at")?,
    })
}

pub(super) fn approval_from_row(row: &impl Columns) -> Result<Approval, StoreError> {
    Ok(Approval {
        session_id: row.text("session_id")?,
        payer_id: row.text("payer_id")?,
        method: parse_stored(&row.text("method")?, "approval method")?,
        evidence: row.text_or_null("evidence")?,
        created_at: row.int("created_at")?,
    })
}

pub(super) fn session_event_from_row(row: &impl Columns) -> Result<SessionEvent, StoreError> {
    Ok(SessionEvent {
        id: row.text("id")?,
        session_id: row.text("session_id")?,
        kind: row.text("type")?,
        from_status: row
            .text_or_null("from_status")?
            .map(|s| s.parse())
            .transpose()
            .map_err(corrupt)?,
        to_status: row.text("to_status")?.parse().map_err(corrupt)?,
        created_at: row.int("created_at")?,
    })
}

/// Every signing key, newest first.
pub(super) const SIGNING_KEYS: &str =
    "SELECT kid, seed, created_at FROM signing_keys ORDER BY seq DESC";

pub(super) fn signing_key_from_row(row: &impl Columns) -> Result<SigningKeyRecord, StoreError> {
    let seed = row.bytes("seed")?;
    Ok(SigningKeyRecord {
        kid: row.text("kid")?,
        seed: seed
            .try_into()
            .map_err(|_| corrupt("a signing key is not 32 bytes"))?,
        created_at: row.int("created_at")?,
    })
}

pub(super) fn refund_from_row(row: &impl Columns) -> Result<RefundRecord, StoreError> {
    Ok(RefundRecord {
        id: row.text("id")?,
        session_id: row.text("session_id")?,
        amount: row.int("amount")?,
        currency: row.text("currency")?.parse().map_err(corrupt)?,
        reason: row
            .text_or_null("reason")?
            .map(|s| parse_stored(&s, "refund reason"))
            .transpose()?,
        transfer_id: row.text("transfer_id")?,
        created_at: row.int("created_at")?,
    })
}

pub(super) fn mandate_event_from_row(row: &impl Columns) -> Result<MandateEvent, StoreError> {
    let status = |raw: String| parse_stored::<MandateStatus>(&raw, "mandate status");
    Ok(MandateEvent {
        id: row.text("id")?,
        mandate_id: row.text("mandate_id")?,
        kind: event_kind(&row.text("type")?)?,
        from_status: row.text_or_null("from_status")?.map(status).transpose()?,
        to_status: status(row.text("to_status")?)?,
        created_at: row.int("created_at")?,
    })
}

/// The SQL of webhooks, written with `$N` placeholders; SQLite reads them as `?N`
/// through [`sqlite_sql`].
pub(super) mod webhook_sql {
    pub const ENDPOINT_COLUMNS: &str = "id, merchant_id, livemode, url, events, secret, status, \
                                        disabled_reason, failing_since, created_at";
    pub const INSERT_ENDPOINT: &str = "INSERT INTO webhook_endpoints \
         (id, merchant_id, livemode, url, events, secret, status, outbox_floor, mandate_floor, \
          created_at) \
         SELECT $1, $2, $3, $4, $5, $6, 'enabled', \
                (SELECT COALESCE(MAX(seq), 0) FROM session_events), \
                (SELECT COALESCE(MAX(seq), 0) FROM mandate_events), $7 \
         WHERE (SELECT COUNT(*) FROM webhook_endpoints \
                WHERE merchant_id = $2 AND livemode = $3 AND status <> 'deleted') < $8";
    pub static ENDPOINTS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints \
             WHERE merchant_id = $1 AND livemode = $2 AND status <> 'deleted' ORDER BY seq"
        )
    });
    pub static ENDPOINT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints \
             WHERE merchant_id = $1 AND livemode = $2 AND id = $3 AND status <> 'deleted'"
        )
    });
    pub static ENDPOINT_BY_ID: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = $1")
    });
    pub const SET_STATUS: &str = "UPDATE webhook_endpoints \
         SET status = $4, disabled_reason = NULL, failing_since = NULL \
         WHERE merchant_id = $1 AND livemode = $2 AND id = $3 AND status <> 'deleted'";
    pub const TARGETS: &str =
        "SELECT id, merchant_id, livemode, events, outbox_floor, mandate_floor \
         FROM webhook_endpoints WHERE status = 'enabled' ORDER BY seq";
    pub const ENQUEUE: &str = "INSERT INTO webhook_deliveries \
         (endpoint_id, event_id, body, status, attempts, next_attempt_at, updated_at) \
         VALUES ($1, $2, $3, 'pending', 0, $4, $4) ON CONFLICT DO NOTHING";
    pub const RAISE_SESSION_FLOOR: &str =
        "UPDATE webhook_endpoints SET outbox_floor = $2 WHERE id = $1 AND outbox_floor < $2";
    pub const RAISE_MANDATE_FLOOR: &str =
        "UPDATE webhook_endpoints SET mandate_floor = $2 WHERE id = $1 AND mandate_floor < $2";
    /// Due deliveries of enabled endpoints, oldest due first, along the index of due
    /// deliveries: those of endpoints that answer ([`DUE_ANSWERING`]) are taken before
    /// those of endpoints that fail ([`DUE_FAILING`]), so that a dead receiver's backlog
    /// does not hold up the others. PostgreSQL appends its row locks.
    fn due(failing: &str) -> String {
        format!(
            "SELECT d.endpoint_id AS endpoint_id, d.event_id AS event_id, \
                 d.attempts AS attempts, d.body AS body, w.url AS url, w.secret AS secret, \
                 w.livemode AS livemode \
             FROM webhook_deliveries d JOIN webhook_endpoints w ON w.id = d.endpoint_id \
             WHERE d.status = 'pending' AND d.next_attempt_at <= $1 \
               AND (d.leased_until IS NULL OR d.leased_until <= $1) AND w.status = 'enabled' \
               AND w.failing_since IS {failing} \
             ORDER BY d.next_attempt_at LIMIT $2"
        )
    }
    pub static DUE_ANSWERING: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| due("NULL"));
    pub static DUE_FAILING: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| due("NOT NULL"));
    pub const LEASE: &str = "UPDATE webhook_deliveries SET leased_until = $3 \
         WHERE endpoint_id = $1 AND event_id = $2";
    pub const FINISH: &str = "UPDATE webhook_deliveries \
         SET status = $3, attempts = attempts + 1, next_attempt_at = $4, leased_until = NULL, \
             last_error = $5, updated_at = $6 \
         WHERE endpoint_id = $1 AND event_id = $2 AND leased_until = $7";
    /// The deliveries of a deleted endpoint are given up.
    pub const GIVE_UP: &str = "UPDATE webhook_deliveries SET status = 'failed', \
         next_attempt_at = NULL, leased_until = NULL, \
         last_error = 'the endpoint was deleted', updated_at = $2 \
         WHERE endpoint_id = $1 AND status = 'pending'";
    /// The deliveries of a disabled endpoint wait, out of the way of the due ones...
    pub const PARK: &str = "UPDATE webhook_deliveries SET next_attempt_at = NULL \
         WHERE endpoint_id = $1 AND status = 'pending'";
    /// ...until it is enabled again.
    pub const UNPARK: &str = "UPDATE webhook_deliveries SET next_attempt_at = $2 \
         WHERE endpoint_id = $1 AND status = 'pending' AND next_attempt_at IS NULL";
    pub const HEALTHY: &str = "UPDATE webhook_endpoints SET failing_since = NULL WHERE id = $1";
    pub const FAILING: &str =
        "UPDATE webhook_endpoints SET failing_since = COALESCE(failing_since, $2) WHERE id = $1";
    pub const DISABLE: &str = "UPDATE webhook_endpoints SET status = 'disabled', \
         disabled_reason = $3 WHERE id = $1 AND status = 'enabled' AND failing_since <= $2";
    pub const REDELIVER: &str = "INSERT INTO webhook_deliveries \
         (endpoint_id, event_id, body, status, attempts, next_attempt_at, updated_at) \
         VALUES ($1, $2, $3, 'pending', 0, $4, $4) \
         ON CONFLICT (endpoint_id, event_id) DO UPDATE SET status = 'pending', attempts = 0, \
             next_attempt_at = $4, leased_until = NULL, last_error = NULL, updated_at = $4";
}

/// The SQL of events: both records as one, with the same columns.
pub(super) mod event_sql {
    /// Every session event, with its owner and its place in the list (`record_rank` 1).
    const SESSIONS: &str =
        "SELECT e.seq AS seq, CAST(1 AS BIGINT) AS record_rank, e.id AS id, e.type AS type, \
             e.session_id AS session_id, CAST(NULL AS TEXT) AS mandate_id, \
             e.from_status AS from_status, e.to_status AS to_status, \
             e.created_at AS created_at, s.merchant_id AS merchant_id, s.livemode AS livemode \
         FROM session_events e JOIN sessions s ON s.id = e.session_id";
    /// Every mandate event, likewise (`record_rank` 0).
    const MANDATES: &str =
        "SELECT me.seq AS seq, CAST(0 AS BIGINT) AS record_rank, me.id AS id, me.type AS type, \
             CAST(NULL AS TEXT) AS session_id, me.mandate_id AS mandate_id, \
             me.from_status AS from_status, me.to_status AS to_status, \
             me.created_at AS created_at, m.merchant_id AS merchant_id, m.livemode AS livemode \
         FROM mandate_events me JOIN mandates m ON m.id = me.mandate_id";

    pub static SESSIONS_AFTER: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| format!("{SESSIONS} WHERE e.seq > $1 ORDER BY e.seq LIMIT $2"));
    pub static MANDATES_AFTER: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!("{MANDATES} WHERE me.seq > $1 ORDER BY me.seq LIMIT $2")
    });
    pub static FIND: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!("{SESSIONS} WHERE e.id = $1 UNION ALL {MANDATES} WHERE me.id = $1")
    });
    pub static POSITION: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "SELECT created_at, record_rank, seq FROM ({SESSIONS} WHERE e.id = $3 \
               AND s.merchant_id = $1 AND s.livemode = $2 \
             UNION ALL {MANDATES} WHERE me.id = $3 \
               AND m.merchant_id = $1 AND m.livemode = $2) ev"
        )
    });
    /// Newest first: by time, sessions' events before mandates' of the same
    /// millisecond, then `seq`. Each record is read from its own bound ($3, $4 for
    /// sessions, $5, $6 for mandates), `$7` rows of each at most.
    pub static LIST: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "SELECT * FROM ( \
               SELECT * FROM ({SESSIONS} WHERE s.merchant_id = $1 AND s.livemode = $2 \
                 AND (e.created_at, e.seq) < ($3, $4) \
                 ORDER BY e.created_at DESC, e.seq DESC LIMIT $7) sv \
               UNION ALL \
               SELECT * FROM ({MANDATES} WHERE m.merchant_id = $1 AND m.livemode = $2 \
                 AND (me.created_at, me.seq) < ($5, $6) \
                 ORDER BY me.created_at DESC, me.seq DESC LIMIT $7) mv \
             ) ev ORDER BY created_at DESC, record_rank DESC, seq DESC LIMIT $7"
        )
    });

    /// The bounds of [`LIST`] for the page after `position` (of the list's last
    /// event): what comes after it in each record.
    pub fn bounds(position: Option<crate::domain::ports::EventPosition>) -> [i64; 4] {
        match position {
            None => [i64::MAX, i64::MAX, i64::MAX, i64::MAX],
            // After a session's event: the sessions' before it, the mandates' of its
            // millisecond and before.
            Some((at, 1, seq)) => [at, seq, at, i64::MAX],
            // After a mandate's event: the sessions' before its millisecond, the
            // mandates' before it.
            Some((at, _, seq)) => [at, i64::MIN, at, seq],
        }
    }
}

/// A page of at most `limit` of `rows` (read with one more), and whether more follow.
pub(super) fn page<T>(
    rows: impl Iterator<Item = Result<T, StoreError>>,
    limit: i64,
) -> Result<(Vec<T>, bool), StoreError> {
    let mut items = rows.collect::<Result<Vec<_>, _>>()?;
    let more = items.len() as i64 > limit;
    items.truncate(limit as usize);
    Ok((items, more))
}

/// SQL written with `$N` placeholders, as SQLite numbers them (`?N`).
pub(super) fn sqlite_sql(sql: &str) -> String {
    sql.replace('$', "?")
}

pub(super) fn webhook_endpoint_from_row(
    row: &impl Columns,
) -> Result<crate::domain::webhooks::WebhookEndpointRecord, StoreError> {
    use crate::domain::webhooks::{parse_events, WebhookEndpointRecord};
    Ok(WebhookEndpointRecord {
        id: row.text("id")?,
        merchant_id: row.text("merchant_id")?,
        livemode: row.flag("livemode")?,
        url: row.text("url")?,
        events: parse_events(row.text_or_null("events")?.as_deref()),
        secret: row.text("secret")?,
        status: row.text("status")?.parse().map_err(corrupt)?,
        disabled_reason: row.text_or_null("disabled_reason")?,
        failing_since: row.int_or_null("failing_since")?,
        created_at: row.int("created_at")?,
    })
}

pub(super) fn fan_out_target_from_row(
    row: &impl Columns,
) -> Result<crate::domain::ports::FanOutTarget, StoreError> {
    Ok(crate::domain::ports::FanOutTarget {
        endpoint_id: row.text("id")?,
        merchant_id: row.text("merchant_id")?,
        livemode: row.flag("livemode")?,
        events: crate::domain::webhooks::parse_events(row.text_or_null("events")?.as_deref()),
        session_floor: row.int("outbox_floor")?,
        mandate_floor: row.int("mandate_floor")?,
    })
}

pub(super) fn event_record_from_row(
    row: &impl Columns,
) -> Result<crate::domain::events::EventRecord, StoreError> {
    Ok(crate::domain::events::EventRecord {
        id: row.text("id")?,
        kind: row.text("type")?,
        session_id: row.text_or_null("session_id")?,
        mandate_id: row.text_or_null("mandate_id")?,
        from_status: row.text_or_null("from_status")?,
        to_status: row.text("to_status")?,
        created_at: row.int("created_at")?,
        merchant_id: row.text("merchant_id")?,
        livemode: row.flag("livemode")?,
    })
}

pub(super) fn outbox_event_from_row(
    row: &impl Columns,
) -> Result<crate::domain::ports::OutboxEvent, StoreError> {
    Ok(crate::domain::ports::OutboxEvent {
        seq: row.int("seq")?,
        event: event_record_from_row(row)?,
    })
}

pub(super) fn due_delivery_from_row(
    row: &impl Columns,
) -> Result<crate::domain::ports::DueDelivery, StoreError> {
    Ok(crate::domain::ports::DueDelivery {
        endpoint_id: row.text("endpoint_id")?,
        event_id: row.text("event_id")?,
        url: row.text("url")?,
        secret: row.text("secret")?,
        livemode: row.flag("livemode")?,
        body: row.text("body")?,
        attempts: row.int("attempts")?,
        lease_until: 0,
    })
}

/// The status, next attempt and error a delivery keeps after an attempt.
pub(super) fn finished_delivery(
    outcome: &crate::domain::webhooks::DeliveryOutcome,
) -> (&'static str, Option<i64>, Option<&str>) {
    use crate::domain::webhooks::DeliveryOutcome;
    match outcome {
        DeliveryOutcome::Delivered => ("delivered", None, None),
        DeliveryOutcome::Failed { error, retry_at } => (
            if retry_at.is_some() {
                "pending"
            } else {
                "failed"
            },
            *retry_at,
            Some(error.as_str()),
        ),
    }
}

/// Why an endpoint was disabled, after `error`.
pub(super) fn disabled_reason(error: &str) -> String {
    format!("deliveries failed for days without a success; the last failure: {error}")
}
