//! Mandates: a payer lets a merchant charge one customer reference without asking,
//! within limits the payer sets, until a date or until revoked.
//!
//! A mandate covers a session only of its own merchant, customer, mode and currency,
//! and only an amount within its per-call limit; the period and total budgets are
//! checked again by the store in the transaction that charges, so concurrent charges
//! can never spend past them (see [`MandateBudget`]).

use super::ids;
use super::keys::Principal;
use super::paging;
use super::payers::ApprovalMethod;
use super::payments::{self, MandateBudget, MandateSpend, PaymentTerms, Plan, Precondition};
use super::ports::Store;
use super::sessions::SessionRecord;
use super::{Clock, DomainError};
use std::sync::Arc;
use time::{Date, Duration, Month, OffsetDateTime, Time};
use walleot_api::{Currency, MandatePeriod, MandateStatus};

/// How long a mandate lasts when the payer does not say: 30 days.
pub const DEFAULT_VALIDITY_MS: i64 = 30 * 24 * 3600 * 1000;
/// The longest a mandate may last: one year.
pub const MAX_VALIDITY_MS: i64 = 366 * 24 * 3600 * 1000;

/// What a payer allows; a limit that is `None` does not apply, but at least the
/// per-call limit or a budget (per period or in total) must.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MandateLimits {
    pub per_call: Option<i64>,
    pub period: Option<(MandatePeriod, i64)>,
    pub total: Option<i64>,
}

impl MandateLimits {
    /// Checks that every limit is a positive amount and that something is limited.
    pub fn new(
        per_call: Option<i64>,
        period: Option<(MandatePeriod, i64)>,
        total: Option<i64>,
    ) -> Result<Self, DomainError> {
        let positive = |field: &'static str, v: Option<i64>| match v {
            Some(v) if v <= 0 => Err(DomainError::invalid(field, "must be more than zero")),
            _ => Ok(()),
        };
        positive("perCallLimit", per_call)?;
        positive("periodLimit", period.map(|(_, v)| v))?;
        positive("totalLimit", total)?;
        if per_call.is_none() && period.is_none() && total.is_none() {
            return Err(DomainError::invalid(
                "limits",
                "a mandate needs a per-call limit, a period limit or a total limit",
            ));
        }
        Ok(MandateLimits {
            per_call,
            period,
            total,
        })
    }
}

/// A mandate as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MandateRecord {
    pub id: String,
    pub merchant_id: String,
    pub livemode: bool,
    pub customer: String,
    pub payer_id: String,
    pub currency: Currency,
    pub limits: MandateLimits,
    /// The session whose checkout the payer granted it from.
    pub granted_with: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
}

impl MandateRecord {
    pub fn status_at(&self, now_ms: i64) -> MandateStatus {
        if self.revoked_at.is_some() {
            MandateStatus::Revoked
        } else if now_ms >= self.expires_at {
            MandateStatus::Expired
        } else {
            MandateStatus::Active
        }
    }

    /// The current period's start and end, when a period limit applies.
    pub fn period_at(&self, now_ms: i64) -> Option<(i64, i64)> {
        self.limits
            .period
            .map(|(period, _)| period_bounds(period, now_ms))
    }

    /// Whether this mandate may pay `session` at all: the same merchant, customer, mode
    /// and currency, active, and the amount within the per-call limit. The budgets are
    /// the store's to check when it charges.
    pub fn may_pay(&self, session: &SessionRecord, now_ms: i64) -> bool {
        self.status_at(now_ms) == MandateStatus::Active
            && self.merchant_id == session.merchant_id
            && Some(&self.customer) == session.customer.as_ref()
            && self.livemode == session.livemode
            && self.currency == session.currency
            && self.limits.per_call.is_none_or(|max| session.amount <= max)
    }

    /// What may still be spent, given what was: `None` when no budget applies.
    pub fn remaining(&self, usage: &Usage, now_ms: i64) -> Option<i64> {
        if self.limits.period.is_none() && self.limits.total.is_none() {
            return (self.status_at(now_ms) != MandateStatus::Active).then_some(0);
        }
        if self.status_at(now_ms) != MandateStatus::Active {
            return Some(0);
        }
        let period = self.limits.period.map(|(_, max)| max - usage.in_period);
        let total = self.limits.total.map(|max| max - usage.total);
        [period, total]
            .into_iter()
            .flatten()
            .min()
            .map(|r| r.max(0))
    }
}

/// What has been spent under a mandate: payments held or captured, not released or
/// lapsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Since the start of the current period (0 without a period limit).
    pub in_period: i64,
    pub total: i64,
}

/// An entry of the append-only record of mandate changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MandateEvent {
    /// `evt_…`, as the events of sessions.
    pub id: String,
    pub mandate_id: String,
    /// `mandate.granted`, `mandate.revoked`, `mandate.expired`.
    pub kind: &'static str,
    pub from_status: Option<MandateStatus>,
    pub to_status: MandateStatus,
    pub created_at: i64,
}

/// The UTC calendar period holding `now_ms`: a day from midnight, a week from Monday
/// midnight, a month from the first at midnight; as `[start, end)` in milliseconds.
pub fn period_bounds(period: MandatePeriod, now_ms: i64) -> (i64, i64) {
    let now = OffsetDateTime::from_unix_timestamp(now_ms.div_euclid(1000))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let day = now.date();
    let (start, end): (Date, Date) = match period {
        MandatePeriod::Day => (day, day + Duration::days(1)),
        MandatePeriod::Week => {
            let monday = day - Duration::days(i64::from(day.weekday().number_days_from_monday()));
            (monday, monday + Duration::days(7))
        }
        MandatePeriod::Month => {
            let first = day.replace_day(1).expect("every month has a first day");
            let (year, month) = match day.month() {
                Month::December => (day.year() + 1, Month::January),
                month => (day.year(), month.next()),
            };
            let next = Date::from_calendar_date(year, month, 1).expect("a valid first day");
            (first, next)
        }
    };
    let ms = |date: Date| date.with_time(Time::MIDNIGHT).assume_utc().unix_timestamp() * 1000;
    (ms(start), ms(end))
}

/// The payment of `session` under `mandate`, charged at creation: the payer's wallet to
/// the merchant, held under manual capture; its precondition carries the budget.
pub fn plan_mandate_payment(
    session: &SessionRecord,
    mandate: &MandateRecord,
    hold_ms: i64,
    now_ms: i64,
) -> Option<Plan> {
    if !mandate.may_pay(session, now_ms) {
        return None;
    }
    let terms = PaymentTerms {
        payer_id: mandate.payer_id.clone(),
        method: ApprovalMethod::Mandate,
        evidence: Some(mandate.id.clone()),
        hold_ms,
        // The test helpers' payer pays from the sandbox, in test mode, as it does there.
        cover_from_sandbox: !session.livemode
            && mandate.payer_id == super::wallets::sandbox_payer_id(&session.merchant_id),
        auto_approvals_per_hour: None,
    };
    let mut plan = payments::plan_payment(session, &terms, now_ms).ok()?;
    let period = mandate.period_at(now_ms);
    plan.precondition = Precondition::Pending {
        unexpired_at: Some(now_ms),
        auto_approvals: None,
        mandate: Some(MandateBudget {
            mandate_id: mandate.id.clone(),
            amount: session.amount,
            now_ms,
            period_start: period.map(|(start, _)| start),
            period_limit: mandate.limits.period.map(|(_, max)| max),
            total_limit: mandate.limits.total,
        }),
    };
    plan.change.mandate_id = Some(mandate.id.clone());
    plan.change.mandate_period = period.map(|(start, _)| start);
    plan.mandate_spend = Some(MandateSpend {
        mandate_id: mandate.id.clone(),
        period_start: period.map(|(start, _)| start),
        amount: session.amount,
    });
    Some(plan)
}

/// A page of a merchant's mandates, each with what was spent under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MandatePage {
    pub mandates: Vec<(MandateRecord, Usage)>,
    pub has_more: bool,
}

/// Which of a merchant's mandates to list.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MandateQuery {
    pub customer: Option<String>,
    pub status: Option<MandateStatus>,
    /// The last mandate of the previous page; empty or none for the first.
    pub cursor: Option<String>,
    pub limit: Option<i64>,
}

/// What a payer grants from a checkout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub payer_id: String,
    /// The session the payer just paid, naming merchant, customer, mode and currency.
    pub session_id: String,
    pub limits: MandateLimits,
    /// Until when; the default is 30 days, the most a year.
    pub expires_at: Option<i64>,
}

/// What a paid checkout offers its payer about mandates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Offer {
    /// No active mandate covers this merchant's customer yet: these are the suggested
    /// limits (per call, per day).
    Open { per_call: i64, per_day: i64 },
    /// The payer already granted this one.
    Granted(MandateRecord),
}

/// Reads the terms a payer filled in: amounts in major units of `currency` (empty: no
/// such limit), a period of `day`, `week` or `month` (or `none`), and the expiry.
pub fn parse_terms(
    currency: Currency,
    per_call: &str,
    period: &str,
    period_limit: &str,
    total: &str,
    expires_at: i64,
) -> Result<MandateTerms, DomainError> {
    let amount = |field: &'static str, raw: &str| -> Result<Option<i64>, DomainError> {
        match raw.trim() {
            "" => Ok(None),
            raw => currency
                .parse_major(raw)
                .map(Some)
                .map_err(|e| DomainError::invalid(field, e)),
        }
    };
    let period = match period.trim() {
        "" | "none" => None,
        raw => Some(
            raw.parse::<MandatePeriod>()
                .map_err(|_| DomainError::invalid("period", "must be day, week, month or none"))?,
        ),
    };
    let period_limit = amount("periodLimit", period_limit)?;
    let period = match (period, period_limit) {
        (Some(period), Some(max)) => Some((period, max)),
        (None, None) => None,
        (Some(_), None) => {
            return Err(DomainError::invalid(
                "periodLimit",
                "a period needs its limit",
            ))
        }
        (None, Some(_)) => {
            return Err(DomainError::invalid(
                "period",
                "a period limit needs its period",
            ))
        }
    };
    let limits = MandateLimits::new(
        amount("perCallLimit", per_call)?,
        period,
        amount("totalLimit", total)?,
    )?;
    Ok(MandateTerms { limits, expires_at })
}

/// What a payer grants: the limits, and until when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MandateTerms {
    pub limits: MandateLimits,
    pub expires_at: i64,
}

#[derive(Clone)]
pub struct Mandates {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
}

impl Mandates {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        Mandates { store, clock }
    }

    /// Grants a mandate for the merchant and customer of a session the payer paid. The
    /// caller has checked the payer's second factor for this grant.
    pub async fn grant(&self, grant: Grant) -> Result<MandateRecord, DomainError> {
        let now = self.clock.now_ms();
        let session = self
            .store
            .find_session(&grant.session_id)
            .await?
            .ok_or_else(|| DomainError::NotFound("no such session".into()))?;
        let customer = self.grantable(&grant.payer_id, &session).await?;
        let expires_at = grant.expires_at.unwrap_or(now + DEFAULT_VALIDITY_MS);
        if expires_at <= now || expires_at > now + MAX_VALIDITY_MS {
            return Err(DomainError::invalid(
                "expiresAt",
                "must be in the future and within a year",
            ));
        }
        let mandate = MandateRecord {
            id: ids::new_id("mdt"),
            merchant_id: session.merchant_id.clone(),
            livemode: session.livemode,
            customer,
            payer_id: grant.payer_id,
            currency: session.currency,
            limits: grant.limits,
            granted_with: session.id,
            created_at: now,
            expires_at,
            revoked_at: None,
        };
        let event = MandateEvent {
            id: ids::new_id("evt"),
            mandate_id: mandate.id.clone(),
            kind: "mandate.granted",
            from_status: None,
            to_status: MandateStatus::Active,
            created_at: now,
        };
        self.store.insert_mandate(&mandate, &event).await?;
        Ok(mandate)
    }

    /// The customer a mandate granted from `session` would cover, when `payer_id` paid
    /// the session and it names one: what every grant is made from.
    pub async fn grantable(
        &self,
        payer_id: &str,
        session: &SessionRecord,
    ) -> Result<String, DomainError> {
        let Some(customer) = session.customer.clone() else {
            return Err(DomainError::Conflict(
                "this payment names no customer: there is nobody to grant a mandate for".into(),
            ));
        };
        let paid_by = self.store.approval_of(&session.id).await?;
        if paid_by.is_none_or(|a| a.payer_id != payer_id) {
            return Err(DomainError::Forbidden(
                "a mandate is granted from a payment this wallet made".into(),
            ));
        }
        Ok(customer)
    }

    /// What the checkout of a paid session offers its payer: nothing unless the session
    /// names a customer and this payer paid it.
    pub async fn offer(
        &self,
        payer_id: &str,
        session: &SessionRecord,
    ) -> Result<Option<Offer>, DomainError> {
        let customer = match self.grantable(payer_id, session).await {
            Ok(customer) => customer,
            Err(DomainError::Conflict(_) | DomainError::Forbidden(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let customer = &customer;
        let now = self.clock.now_ms();
        let granted = self
            .store
            .mandates_for_customer(
                &session.merchant_id,
                session.livemode,
                customer,
                session.currency,
            )
            .await?
            .into_iter()
            .find(|m| m.payer_id == payer_id && m.status_at(now) == MandateStatus::Active);
        Ok(Some(match granted {
            Some(mandate) => Offer::Granted(mandate),
            None => {
                let per_call = session.amount.max(session.currency.minor_per_major());
                Offer::Open {
                    per_call,
                    per_day: per_call * 5,
                }
            }
        }))
    }

    /// The test helper's grant: the sandbox payer grants a mandate from a test session it
    /// paid (`/v1/test_helpers/sessions/{id}/pay`).
    /// Without any limit, the per-call limit is the session's amount.
    pub async fn grant_as_sandbox_payer(
        &self,
        owner: &Principal,
        session_id: &str,
        (per_call, period, total): (Option<i64>, Option<(MandatePeriod, i64)>, Option<i64>),
        expires_in_secs: Option<i64>,
    ) -> Result<MandateRecord, DomainError> {
        if owner.mode.is_live() {
            return Err(DomainError::Forbidden(
                "test helpers accept only test keys (sk_test_…)".into(),
            ));
        }
        let session = self
            .store
            .get_session(&owner.merchant_id, false, session_id)
            .await?
            .ok_or_else(|| DomainError::NotFound(format!("no session `{session_id}`")))?;
        let secs = expires_in_secs.unwrap_or(DEFAULT_VALIDITY_MS / 1000);
        if !(60..=MAX_VALIDITY_MS / 1000).contains(&secs) {
            return Err(DomainError::invalid(
                "expiresIn",
                format!("must be between 60 and {} seconds", MAX_VALIDITY_MS / 1000),
            ));
        }
        let payer_id = super::wallets::sandbox_payer_id(&owner.merchant_id);
        match self.grantable(&payer_id, &session).await {
            Err(DomainError::Conflict(_) | DomainError::Forbidden(_)) => {
                return Err(DomainError::Conflict(
                    "only a session that names a customer and was paid with the pay test helper grants a mandate"
                        .into(),
                ))
            }
            other => other?,
        };
        let per_call = match (per_call, period, total) {
            (None, None, None) => Some(session.amount),
            _ => per_call,
        };
        let limits = MandateLimits::new(per_call, period, total)?;
        self.grant(Grant {
            payer_id,
            session_id: session.id,
            limits,
            expires_at: Some(self.clock.now_ms() + secs * 1000),
        })
        .await
    }

    /// Records the expiry of mandates whose date has passed, up to `batch`.
    pub async fn record_expiries(&self, batch: i64) -> Result<usize, DomainError> {
        Ok(self
            .store
            .record_mandate_expiries(self.clock.now_ms(), batch)
            .await?)
    }

    /// The recorded changes of a payer's or merchant's mandate, oldest first.
    pub async fn events(&self, id: &str) -> Result<Vec<MandateEvent>, DomainError> {
        Ok(self.store.mandate_events(id).await?)
    }

    /// Revokes a payer's mandate at once; revoking one already revoked changes nothing.
    pub async fn revoke(&self, payer_id: &str, id: &str) -> Result<MandateRecord, DomainError> {
        let now = self.clock.now_ms();
        let mandate = self
            .find(id)
            .await?
            .filter(|m| m.payer_id == payer_id)
            .ok_or_else(|| DomainError::NotFound("no such mandate".into()))?;
        if mandate.revoked_at.is_some() {
            return Ok(mandate);
        }
        let event = MandateEvent {
            id: ids::new_id("evt"),
            mandate_id: mandate.id.clone(),
            kind: "mandate.revoked",
            from_status: Some(mandate.status_at(now)),
            to_status: MandateStatus::Revoked,
            created_at: now,
        };
        Ok(self.store.revoke_mandate(&mandate.id, &event).await?)
    }

    /// A payer's mandates, newest first, each with what was spent under it.
    pub async fn of_payer(
        &self,
        payer_id: &str,
    ) -> Result<Vec<(MandateRecord, Usage)>, DomainError> {
        let now = self.clock.now_ms();
        let mut out = Vec::new();
        for mandate in self.store.mandates_of_payer(payer_id).await? {
            let usage = self.usage(&mandate, now).await?;
            out.push((mandate, usage));
        }
        Ok(out)
    }

    /// One of the merchant's mandates, in the key's mode.
    /// The mandate with this id; `None` for an id no mandate can have.
    async fn find(&self, id: &str) -> Result<Option<MandateRecord>, DomainError> {
        if !ids::has_shape(id, "mdt") {
            return Ok(None);
        }
        Ok(self.store.find_mandate(id).await?)
    }

    pub async fn get(
        &self,
        owner: &Principal,
        id: &str,
    ) -> Result<(MandateRecord, Usage), DomainError> {
        let now = self.clock.now_ms();
        let mandate = self
            .find(id)
            .await?
            .filter(|m| m.merchant_id == owner.merchant_id && m.livemode == owner.mode.is_live())
            .ok_or_else(|| DomainError::NotFound(format!("no mandate `{id}`")))?;
        let usage = self.usage(&mandate, now).await?;
        Ok((mandate, usage))
    }

    /// The merchant's mandates in the key's mode, newest first.
    pub async fn list(
        &self,
        owner: &Principal,
        query: MandateQuery,
    ) -> Result<MandatePage, DomainError> {
        let now = self.clock.now_ms();
        let limit = paging::page_limit(query.limit)?;
        // An empty filter matches no mandate, as it always did; any other is held to
        // what a customer reference can be.
        if let Some(customer) = query.customer.as_deref().filter(|c| !c.is_empty()) {
            super::sessions::check_customer(customer)?;
        }
        let before_seq = match paging::cursor(query.cursor.as_deref(), "mdt")? {
            None => None,
            Some(cursor) => Some(
                self.store
                    .mandate_seq(&owner.merchant_id, owner.mode.is_live(), cursor)
                    .await?
                    .ok_or_else(|| paging::unknown_cursor("mandate", cursor))?,
            ),
        };
        let (mandates, has_more) = self
            .store
            .list_mandates(
                &owner.merchant_id,
                owner.mode.is_live(),
                query.customer.as_deref(),
                query.status,
                before_seq,
                now,
                limit,
            )
            .await?;
        let mut out = Vec::with_capacity(mandates.len());
        for mandate in mandates {
            let usage = self.usage(&mandate, now).await?;
            out.push((mandate, usage));
        }
        Ok(MandatePage {
            mandates: out,
            has_more,
        })
    }

    /// The plan that pays a new session under one of its customer's mandates, if an
    /// active one covers it; the newest such mandate is used.
    pub async fn covering_plan(
        &self,
        session: &SessionRecord,
        hold_ms: i64,
    ) -> Result<Option<Plan>, DomainError> {
        let Some(customer) = &session.customer else {
            return Ok(None);
        };
        let now = self.clock.now_ms();
        let candidates = self
            .store
            .mandates_for_customer(
                &session.merchant_id,
                session.livemode,
                customer,
                session.currency,
            )
            .await?;
        for mandate in candidates {
            if !mandate.may_pay(session, now) {
                continue;
            }
            let usage = self.usage(&mandate, now).await?;
            if mandate
                .remaining(&usage, now)
                .is_none_or(|left| left >= session.amount)
            {
                return Ok(plan_mandate_payment(session, &mandate, hold_ms, now));
            }
        }
        Ok(None)
    }

    async fn usage(&self, mandate: &MandateRecord, now_ms: i64) -> Result<Usage, DomainError> {
        let start = mandate.period_at(now_ms).map(|(start, _)| start);
        Ok(self.store.mandate_usage(&mandate.id, start).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> i64 {
        let parsed =
            OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).unwrap();
        parsed.unix_timestamp() * 1000
    }

    #[test]
    fn periods_are_utc_calendar_days_weeks_and_months() {
        let now = at("2026-11-26T23:59:59Z"); // a Thursday
        assert_eq!(
            period_bounds(MandatePeriod::Day, now),
            (at("2026-11-26T00:00:00Z"), at("2026-11-27T00:00:00Z"))
        );
        assert_eq!(
            period_bounds(MandatePeriod::Week, now),
            (at("2026-11-23T00:00:00Z"), at("2026-11-30T00:00:00Z"))
        );
        assert_eq!(
            period_bounds(MandatePeriod::Month, now),
            (at("2026-11-01T00:00:00Z"), at("2026-12-01T00:00:00Z"))
        );
        assert_eq!(
            period_bounds(MandatePeriod::Month, at("2026-12-31T12:00:00Z")),
            (at("2026-12-01T00:00:00Z"), at("2027-01-01T00:00:00Z"))
        );
        // Midnight belongs to the period it starts.
        assert_eq!(
            period_bounds(MandatePeriod::Day, at("2026-11-27T00:00:00Z")).0,
            at("2026-11-27T00:00:00Z")
        );
    }

    #[test]
    fn limits_must_be_positive_and_limit_something() {
        assert!(MandateLimits::new(None, None, None).is_err());
        assert!(MandateLimits::new(Some(0), None, None).is_err());
        assert!(MandateLimits::new(None, Some((MandatePeriod::Day, -5)), None).is_err());
        assert!(MandateLimits::new(Some(50), None, None).is_ok());
        assert!(MandateLimits::new(None, None, Some(1000)).is_ok());
    }

    #[test]
    fn what_remains_is_the_least_of_the_budgets() {
        let limits =
            MandateLimits::new(Some(100), Some((MandatePeriod::Day, 500)), Some(800)).unwrap();
        let mandate = MandateRecord {
            id: "mdt_x".into(),
            merchant_id: "mer_x".into(),
            livemode: false,
            customer: "agent-7".into(),
            payer_id: "pay_x".into(),
            currency: Currency::USD,
            limits,
            granted_with: "sess_x".into(),
            created_at: 0,
            expires_at: 10_000,
            revoked_at: None,
        };
        let usage = |in_period, total| Usage { in_period, total };
        assert_eq!(mandate.remaining(&usage(0, 0), 1), Some(500));
        assert_eq!(mandate.remaining(&usage(100, 600), 1), Some(200));
        assert_eq!(mandate.remaining(&usage(900, 900), 1), Some(0));
        assert_eq!(mandate.remaining(&usage(0, 0), 10_000), Some(0), "expired");
        let revoked = MandateRecord {
            revoked_at: Some(5),
            ..mandate
        };
        assert_eq!(revoked.status_at(6), MandateStatus::Revoked);
        assert_eq!(revoked.remaining(&usage(0, 0), 6), Some(0));
    }
}
