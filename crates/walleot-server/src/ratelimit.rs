//! Per-key request budgets in fixed one-minute windows, kept in memory; the payer's
//! pages count their own buckets per client address, in windows of their own length.
//!
//! Each instance of the service counts on its own; with several instances behind a
//! balancer a key's effective budget is the per-instance budget times their number.

use std::collections::HashMap;
use std::sync::Mutex;

/// What a request is counted against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bucket {
    /// Session creation and every other POST of an API key.
    Sessions,
    /// Status checks and every other GET of an API key.
    Status,
    /// Requests without a valid key, counted per client address.
    Anonymous,
    /// New wallets made from the pages, per client address.
    Wallets,
    /// Passkey and authenticator-app enrolments, per client address.
    Enrolments,
    /// Approvals of payments (passkey, app code, the pay button), per client address.
    Approvals,
    /// Voucher redemptions and test credits, per client address.
    TopUps,
}

impl Bucket {
    /// The policy name written in the `RateLimit` and `RateLimit-Policy` headers.
    pub fn policy_name(self) -> &'static str {
        match self {
            Bucket::Sessions => "sessions",
            Bucket::Status => "status",
            Bucket::Anonymous => "anonymous",
            Bucket::Wallets => "wallets",
            Bucket::Enrolments => "enrolments",
            Bucket::Approvals => "approvals",
            Bucket::TopUps => "top-ups",
        }
    }
}

/// Requests allowed per window, by bucket.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub sessions_per_window: u32,
    pub status_per_window: u32,
    pub anonymous_per_window: u32,
    pub window_secs: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            sessions_per_window: 100,
            status_per_window: 1000,
            anonymous_per_window: 300,
            window_secs: 60,
        }
    }
}

impl Limits {
    /// The budget of an API bucket; the pages name theirs with each check.
    pub fn of(&self, bucket: Bucket) -> u32 {
        match bucket {
            Bucket::Sessions => self.sessions_per_window,
            Bucket::Status => self.status_per_window,
            Bucket::Anonymous => self.anonymous_per_window,
            Bucket::Wallets | Bucket::Enrolments | Bucket::Approvals | Bucket::TopUps => u32::MAX,
        }
    }
}

/// The verdict on one request and the numbers its answer's headers show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub bucket: Bucket,
    pub limit: u32,
    pub remaining: u32,
    /// Whole seconds until the window resets (at least 1).
    pub reset_secs: u64,
    pub window_secs: u32,
}

struct Window {
    started_ms: i64,
    length_ms: i64,
    used: u32,
}

pub struct RateLimiter {
    limits: Limits,
    windows: Mutex<HashMap<(Bucket, String), Window>>,
}

/// Above this many tracked windows, finished ones are dropped on the next check.
const PRUNE_ABOVE: usize = 10_000;

impl RateLimiter {
    pub fn new(limits: Limits) -> Self {
        RateLimiter {
            limits,
            windows: Mutex::new(HashMap::new()),
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Counts one request of `who` against `bucket` at `now_ms`.
    pub fn check(&self, bucket: Bucket, who: &str, now_ms: i64) -> Decision {
        self.check_budget(
            bucket,
            self.limits.of(bucket),
            self.limits.window_secs,
            who,
            now_ms,
        )
    }

    /// Counts one request of `who` against `bucket`, whose budget is `limit` requests
    /// per `window_secs`.
    pub fn check_budget(
        &self,
        bucket: Bucket,
        limit: u32,
        window_secs: u32,
        who: &str,
        now_ms: i64,
    ) -> Decision {
        let window_ms = i64::from(window_secs.max(1)) * 1000;
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if windows.len() > PRUNE_ABOVE {
            windows.retain(|_, w| now_ms - w.started_ms < w.length_ms);
        }
        let fresh = Window {
            started_ms: now_ms,
            length_ms: window_ms,
            used: 0,
        };
        let window = windows.entry((bucket, who.to_string())).or_insert(fresh);
        if now_ms - window.started_ms >= window_ms {
            *window = Window {
                started_ms: now_ms,
                length_ms: window_ms,
                used: 0,
            };
        }
        let allowed = window.used < limit;
        if allowed {
            window.used += 1;
        }
        let left_ms = (window.started_ms + window_ms - now_ms).max(1);
        Decision {
            allowed,
            bucket,
            limit,
            remaining: limit - window.used,
            reset_secs: (left_ms as u64).div_ceil(1000),
            window_secs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(sessions: u32) -> RateLimiter {
        RateLimiter::new(Limits {
            sessions_per_window: sessions,
            ..Limits::default()
        })
    }

    #[test]
    fn a_budget_is_spent_then_refused_until_the_window_resets() {
        let l = limiter(2);
        let t = 1_000_000;
        let first = l.check(Bucket::Sessions, "k", t);
        assert!(first.allowed);
        assert_eq!((first.limit, first.remaining, first.reset_secs), (2, 1, 60));
        assert!(l.check(Bucket::Sessions, "k", t + 1).allowed);
        let refused = l.check(Bucket::Sessions, "k", t + 30_500);
        assert!(!refused.allowed);
        assert_eq!((refused.remaining, refused.reset_secs), (0, 30));
        let next = l.check(Bucket::Sessions, "k", t + 60_000);
        assert!(next.allowed);
        assert_eq!(next.remaining, 1);
    }

    #[test]
    fn keys_and_buckets_count_apart() {
        let l = limiter(1);
        assert!(l.check(Bucket::Sessions, "a", 0).allowed);
        assert!(!l.check(Bucket::Sessions, "a", 1).allowed);
        assert!(l.check(Bucket::Sessions, "b", 1).allowed);
        assert!(l.check(Bucket::Status, "a", 1).allowed);
    }

    #[test]
    fn budgets_named_by_the_caller_keep_their_own_window() {
        let l = limiter(5);
        let t = 1_000_000;
        assert!(l.check_budget(Bucket::Wallets, 1, 3600, "a", t).allowed);
        let refused = l.check_budget(Bucket::Wallets, 1, 3600, "a", t + 120_000);
        assert!(!refused.allowed);
        assert_eq!((refused.reset_secs, refused.window_secs), (3480, 3600));
        // Pruning for the one-minute API windows keeps the hour's.
        for i in 0..=PRUNE_ABOVE {
            l.check(Bucket::Status, &i.to_string(), t + 120_000);
        }
        l.check(Bucket::Status, "late", t + 240_000);
        assert!(
            !l.check_budget(Bucket::Wallets, 1, 3600, "a", t + 240_000)
                .allowed
        );
        assert!(
            l.check_budget(Bucket::Wallets, 1, 3600, "a", t + 3_600_000)
                .allowed
        );
    }

    #[test]
    fn finished_windows_are_pruned() {
        let l = limiter(5);
        for i in 0..=PRUNE_ABOVE {
            l.check(Bucket::Status, &i.to_string(), 0);
        }
        l.check(Bucket::Status, "late", 120_000);
        assert_eq!(l.windows.lock().unwrap().len(), 1);
    }
}
