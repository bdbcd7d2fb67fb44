//! Per-key request budgets in fixed one-minute windows; the payer's pages count their
//! own buckets per client address, in windows of their own length.
//!
//! Counted in memory, each instance of the service counts on its own: with several
//! instances behind a balancer a key's effective budget is the per-instance budget
//! times their number. Counted in Redis (`--redis-url`), the instances share every
//! budget: one counter per window, made and expired by Redis, one round trip per
//! request. Should Redis fail, the instance counts in memory meanwhile rather than
//! refuse or let everything through.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

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
    shared: Option<redis::aio::ConnectionManager>,
    /// Until when Redis is left alone after it failed, so that requests are not each
    /// made to wait for it meanwhile.
    shared_resting_until: Mutex<Option<std::time::Instant>>,
}

/// How long Redis is left alone after it failed.
const SHARED_REST: std::time::Duration = std::time::Duration::from_secs(5);

/// One more request in the window of `KEYS[1]`, which starts with the first and lasts
/// `ARGV[1]` milliseconds: the requests counted so far and the milliseconds left.
static COUNT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
        local used = redis.call('INCR', KEYS[1])
        if used == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
        local left = redis.call('PTTL', KEYS[1])
        if left < 0 then
          redis.call('PEXPIRE', KEYS[1], ARGV[1])
          left = tonumber(ARGV[1])
        end
        return {used, left}
        ",
    )
});

/// Above this many tracked windows, finished ones are dropped on the next check.
const PRUNE_ABOVE: usize = 10_000;

impl RateLimiter {
    /// Counting in this process's memory.
    pub fn new(limits: Limits) -> Self {
        RateLimiter {
            limits,
            windows: Mutex::new(HashMap::new()),
            shared: None,
            shared_resting_until: Mutex::new(None),
        }
    }

    /// Counting in the Redis at `url`, shared with every instance counting there. A
    /// request waits for Redis a quarter of a second at most, then is counted here.
    pub async fn shared(limits: Limits, url: &str) -> Result<Self, redis::RedisError> {
        let patience = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(std::time::Duration::from_millis(250))
            .set_response_timeout(std::time::Duration::from_millis(250))
            .set_number_of_retries(1);
        let redis = redis::Client::open(url)?
            .get_connection_manager_with_config(patience)
            .await?;
        Ok(RateLimiter {
            shared: Some(redis),
            ..RateLimiter::new(limits)
        })
    }

    /// Whether the Redis the budgets are counted in answers; `None` when they are
    /// counted in memory.
    pub async fn shared_store_answers(&self) -> Option<bool> {
        let mut redis = self.shared.clone()?;
        let pong: Result<String, _> = redis::cmd("PING").query_async(&mut redis).await;
        Some(pong.is_ok())
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Counts one request of `who` against `bucket` at `now_ms`.
    pub async fn check(&self, bucket: Bucket, who: &str, now_ms: i64) -> Decision {
        self.check_budget(
            bucket,
            self.limits.of(bucket),
            self.limits.window_secs,
            who,
            now_ms,
        )
        .await
    }

    /// Counts one request of `who` against `bucket`, whose budget is `limit` requests
    /// per `window_secs`.
    pub async fn check_budget(
        &self,
        bucket: Bucket,
        limit: u32,
        window_secs: u32,
        who: &str,
        now_ms: i64,
    ) -> Decision {
        let window_ms = i64::from(window_secs.max(1)) * 1000;
        if let Some(redis) = self.shared.as_ref().filter(|_| !self.shared_resting()) {
            let key = format!("walleot:rate:{}:{who}", bucket.policy_name());
            let counted: Result<(i64, i64), _> = COUNT
                .key(key)
                .arg(window_ms)
                .invoke_async(&mut redis.clone())
                .await;
            match counted {
                Ok((used, left_ms)) => {
                    let used = u32::try_from(used).unwrap_or(u32::MAX);
                    return Decision {
                        allowed: used <= limit,
                        bucket,
                        limit,
                        remaining: limit.saturating_sub(used),
                        reset_secs: (left_ms.max(1) as u64).div_ceil(1000),
                        window_secs,
                    };
                }
                Err(e) => {
                    tracing::warn!(error = %e, "rate limits counted in memory for a while: Redis failed");
                    *self.resting_lock() = Some(std::time::Instant::now() + SHARED_REST);
                }
            }
        }
        self.count_here(bucket, limit, window_secs, window_ms, who, now_ms)
    }

    fn resting_lock(&self) -> std::sync::MutexGuard<'_, Option<std::time::Instant>> {
        self.shared_resting_until
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn shared_resting(&self) -> bool {
        self.resting_lock()
            .is_some_and(|until| std::time::Instant::now() < until)
    }

    fn count_here(
        &self,
        bucket: Bucket,
        limit: u32,
        window_secs: u32,
        window_ms: i64,
        who: &str,
        now_ms: i64,
    ) -> Decision {
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

    fn limits(sessions: u32) -> Limits {
        Limits {
            sessions_per_window: sessions,
            ..Limits::default()
        }
    }

    fn limiter(sessions: u32) -> RateLimiter {
        RateLimiter::new(limits(sessions))
    }

    #[tokio::test]
    async fn a_budget_is_spent_then_refused_until_the_window_resets() {
        let l = limiter(2);
        let t = 1_000_000;
        let first = l.check(Bucket::Sessions, "k", t).await;
        assert!(first.allowed);
        assert_eq!((first.limit, first.remaining, first.reset_secs), (2, 1, 60));
        assert!(l.check(Bucket::Sessions, "k", t + 1).await.allowed);
        let refused = l.check(Bucket::Sessions, "k", t + 30_500).await;
        assert!(!refused.allowed);
        assert_eq!((refused.remaining, refused.reset_secs), (0, 30));
        let next = l.check(Bucket::Sessions, "k", t + 60_000).await;
        assert!(next.allowed);
        assert_eq!(next.remaining, 1);
    }

    #[tokio::test]
    async fn keys_and_buckets_count_apart() {
        let l = limiter(1);
        assert!(l.check(Bucket::Sessions, "a", 0).await.allowed);
        assert!(!l.check(Bucket::Sessions, "a", 1).await.allowed);
        assert!(l.check(Bucket::Sessions, "b", 1).await.allowed);
        assert!(l.check(Bucket::Status, "a", 1).await.allowed);
    }

    #[tokio::test]
    async fn budgets_named_by_the_caller_keep_their_own_window() {
        let l = limiter(5);
        let t = 1_000_000;
        assert!(
            l.check_budget(Bucket::Wallets, 1, 3600, "a", t)
                .await
                .allowed
        );
        let refused = l
            .check_budget(Bucket::Wallets, 1, 3600, "a", t + 120_000)
            .await;
        assert!(!refused.allowed);
        assert_eq!((refused.reset_secs, refused.window_secs), (3480, 3600));
        // Pruning for the one-minute API windows keeps the hour's.
        for i in 0..=PRUNE_ABOVE {
            l.check(Bucket::Status, &i.to_string(), t + 120_000).await;
        }
        l.check(Bucket::Status, "late", t + 240_000).await;
        assert!(
            !l.check_budget(Bucket::Wallets, 1, 3600, "a", t + 240_000)
                .await
                .allowed
        );
        assert!(
            l.check_budget(Bucket::Wallets, 1, 3600, "a", t + 3_600_000)
                .await
                .allowed
        );
    }

    #[tokio::test]
    async fn finished_windows_are_pruned() {
        let l = limiter(5);
        for i in 0..=PRUNE_ABOVE {
            l.check(Bucket::Status, &i.to_string(), 0).await;
        }
        l.check(Bucket::Status, "late", 120_000).await;
        assert_eq!(l.windows.lock().unwrap().len(), 1);
    }

    /// Two instances counting in the local Redis (started by `.ci/run`) share a budget.
    #[tokio::test]
    async fn instances_counting_in_redis_share_one_budget() {
        let limits = limits(3);
        let url = "redis://127.0.0.1:6379";
        let one = RateLimiter::shared(limits, url)
            .await
            .expect("the local Redis");
        let two = RateLimiter::shared(limits, url).await.unwrap();
        let key = format!("key_{}", crate::domain::ids::random_base62(24));
        let mut seen = Vec::new();
        for limiter in [&one, &two, &one, &two] {
            let d = limiter.check(Bucket::Sessions, &key, 0).await;
            seen.push((d.allowed, d.remaining));
            assert!((59..=60).contains(&d.reset_secs), "{d:?}");
        }
        assert_eq!(seen, [(true, 2), (true, 1), (true, 0), (false, 0)]);
        // Another bucket, another key: budgets of their own.
        assert!(two.check(Bucket::Status, &key, 0).await.allowed);
        let other = one.check(Bucket::Sessions, &format!("{key}-2"), 0).await;
        assert_eq!((other.allowed, other.remaining), (true, 2));
        assert_eq!(one.shared_store_answers().await, Some(true));
        assert_eq!(RateLimiter::new(limits).shared_store_answers().await, None);
    }

    /// A Redis that stops answering leaves the instance counting in memory.
    #[tokio::test]
    async fn a_failing_redis_leaves_the_count_to_this_instance() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut redis = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server");
        let url = format!("redis://127.0.0.1:{port}");
        let mut limiter = None;
        for _ in 0..100 {
            if let Ok(l) = RateLimiter::shared(limits(2), &url).await {
                limiter = Some(l);
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let limiter = limiter.expect("the Redis started for this test");
        assert!(limiter.check(Bucket::Sessions, "k", 0).await.allowed);
        redis.kill().unwrap();
        redis.wait().unwrap();
        assert_eq!(limiter.shared_store_answers().await, Some(false));
        // Counted here now: one left of two, then refused.
        assert!(limiter.check(Bucket::Sessions, "k", 0).await.allowed);
        assert!(limiter.check(Bucket::Sessions, "k", 1).await.allowed);
        assert!(!limiter.check(Bucket::Sessions, "k", 2).await.allowed);
    }
}
