//! Pending payments in Redis, for several MCP server instances behind a load balancer:
//! a payment opened through one instance can be confirmed through any other.
//!
//! Each payment is one hash (`{prefix}pay:{id}`: the payment as JSON, its phase, its
//! owner, and once run its result); the open (unpaid) ones are also in two sorted sets
//! scored by expiry, everyone's and the owner's, which answer the caps. Every change of
//! phase is one Lua script, so a tool runs at most once per payment however many
//! instances race. Redis drops what the retention no longer keeps by itself: an unpaid
//! payment at its session's expiry plus `after_expiry`, a settled result `results`
//! after it was kept; a payment being run or settled never expires. One Redis server
//! (or its primary) is expected, not a cluster: the scripts touch keys they compute.

use super::{now_unix, Claim, OpenCounts, PaymentState, PaymentStore, PendingPayment, Retention};
use super::{state_of, StoreError};
use ::redis::aio::ConnectionManager;
use ::redis::{AsyncCommands, Script};
use async_trait::async_trait;
use serde_json::Value;
use std::sync::LazyLock;
use std::time::Duration;

pub struct RedisStore {
    pub(super) redis: ConnectionManager,
    pub(super) prefix: String,
    retention: Retention,
}

/// `AwaitingPayment` → `Running`, taking the payment out of the open sets; otherwise
/// the phase as it is, with the result once there is one.
static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        local phase = redis.call('HGET', KEYS[1], 'phase')
        if not phase then return {} end
        if phase == 'awaiting' then
          redis.call('HSET', KEYS[1], 'phase', 'running')
          redis.call('PERSIST', KEYS[1])
          redis.call('ZREM', KEYS[2], ARGV[1])
          redis.call('ZREM', ARGV[2] .. redis.call('HGET', KEYS[1], 'owner'), ARGV[1])
          return {'run'}
        end
        local kept = redis.call('HMGET', KEYS[1], 'result', 'succeeded')
        return {phase, kept[1] or '', kept[2] or ''}
        ",
    )
});

/// Keeps a run's result in phase `ran` (kept until settled) or `done` (kept until
/// `ARGV[4]`, Unix seconds); nothing for a payment no longer kept.
static KEEP_RESULT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
        redis.call('HSET', KEYS[1], 'phase', ARGV[1], 'result', ARGV[2], 'succeeded', ARGV[3])
        if ARGV[1] == 'done' then
          redis.call('EXPIREAT', KEYS[1], ARGV[4])
        else
          redis.call('PERSIST', KEYS[1])
        end
        return 1
        ",
    )
});

impl RedisStore {
    /// Connects to the Redis at `url` (`redis://HOST:PORT[/DB]`), keys under `walleot:`.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        Self::open_with_prefix(url, "walleot:").await
    }

    /// Keys under `prefix`, so that several servers of different merchants can share
    /// one Redis without seeing each other's payments or counting them in their caps.
    pub async fn open_with_prefix(url: &str, prefix: &str) -> Result<Self, StoreError> {
        // A Redis that stops answering fails the call that needs it within seconds,
        // with a store failure the caller is told about, rather than holding it.
        let patience = ::redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Duration::from_secs(2))
            .set_response_timeout(Duration::from_secs(5))
            .set_number_of_retries(2);
        let client = ::redis::Client::open(url).map_err(fail)?;
        let redis = client
            .get_connection_manager_with_config(patience)
            .await
            .map_err(fail)?;
        Ok(RedisStore {
            redis,
            prefix: prefix.to_string(),
            retention: Retention::default(),
        })
    }

    pub fn retention(mut self, retention: Retention) -> Self {
        self.retention = retention;
        self
    }

    pub(super) fn payment_key(&self, payment_id: &str) -> String {
        format!("{}pay:{payment_id}", self.prefix)
    }

    fn open_key(&self) -> String {
        format!("{}open", self.prefix)
    }

    fn owner_prefix(&self) -> String {
        format!("{}open:", self.prefix)
    }

    async fn keep_result(
        &self,
        payment_id: &str,
        phase: &str,
        result: Value,
        succeeded: bool,
    ) -> Result<(), StoreError> {
        let until = now_unix() + self.retention.results.as_secs() as i64;
        let _: i64 = KEEP_RESULT
            .key(self.payment_key(payment_id))
            .arg(phase)
            .arg(result.to_string())
            .arg(if succeeded { "1" } else { "0" })
            .arg(until)
            .invoke_async(&mut self.redis.clone())
            .await
            .map_err(fail)?;
        Ok(())
    }
}

/// Redis out of memory (`maxmemory` reached) is a full store; anything else a failure.
fn fail(e: ::redis::RedisError) -> StoreError {
    if e.code() == Some("OOM") {
        StoreError::Full
    } else {
        StoreError::Failed(e.to_string())
    }
}

#[async_trait]
impl PaymentStore for RedisStore {
    async fn put(&self, payment: PendingPayment) -> Result<(), StoreError> {
        let now = now_unix();
        let text =
            serde_json::to_string(&payment).map_err(|e| StoreError::Failed(e.to_string()))?;
        let key = self.payment_key(&payment.payment_id);
        let owner = format!("{}{}", self.owner_prefix(), payment.owner);
        let kept_until = payment.expires_unix + self.retention.after_expiry.as_secs() as i64;
        let expires = payment.expires_unix;
        let id = &payment.payment_id;
        // The owner's set lasts as long as its longest-kept payment.
        let mut pipe = ::redis::pipe();
        pipe.atomic()
            .zrembyscore(self.open_key(), "-inf", now)
            .zrembyscore(&owner, "-inf", now)
            .hset_multiple(
                &key,
                &[
                    ("payment", text.as_str()),
                    ("phase", "awaiting"),
                    ("owner", payment.owner.as_str()),
                ],
            )
            .expire_at(&key, kept_until)
            .zadd(self.open_key(), id, expires)
            .zadd(&owner, id, expires)
            .cmd("EXPIREAT")
            .arg(&owner)
            .arg(kept_until)
            .arg("NX")
            .cmd("EXPIREAT")
            .arg(&owner)
            .arg(kept_until)
            .arg("GT");
        let _: () = pipe
            .query_async(&mut self.redis.clone())
            .await
            .map_err(fail)?;
        Ok(())
    }

    async fn get(
        &self,
        payment_id: &str,
    ) -> Result<Option<(PendingPayment, PaymentState)>, StoreError> {
        let (payment, phase, result, succeeded): (
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
        ) = self
            .redis
            .clone()
            .hget(
                self.payment_key(payment_id),
                &["payment", "phase", "result", "succeeded"],
            )
            .await
            .map_err(fail)?;
        let (Some(payment), Some(phase)) = (payment, phase) else {
            return Ok(None);
        };
        let payment =
            serde_json::from_str(&payment).map_err(|e| StoreError::Failed(e.to_string()))?;
        Ok(Some((
            payment,
            state_of(&phase, result, succeeded.map(|s| s == "1"))?,
        )))
    }

    async fn open_counts(&self, owner: &str, now: i64) -> Result<OpenCounts, StoreError> {
        let owner = format!("{}{owner}", self.owner_prefix());
        let after_now = format!("({now}");
        let (mine, total): (usize, usize) = ::redis::pipe()
            .zcount(&owner, &after_now, "+inf")
            .zcount(self.open_key(), &after_now, "+inf")
            .query_async(&mut self.redis.clone())
            .await
            .map_err(fail)?;
        Ok(OpenCounts { owner: mine, total })
    }

    async fn claim(&self, payment_id: &str) -> Result<Claim, StoreError> {
        let answer: Vec<String> = CLAIM
            .key(self.payment_key(payment_id))
            .key(self.open_key())
            .arg(payment_id)
            .arg(self.owner_prefix())
            .invoke_async(&mut self.redis.clone())
            .await
            .map_err(fail)?;
        let result = |raw: Option<&String>| -> Result<Value, StoreError> {
            serde_json::from_str(raw.map_or("null", |s| s.as_str()))
                .map_err(|e| StoreError::Failed(e.to_string()))
        };
        let succeeded = answer.get(2).is_some_and(|s| s == "1");
        Ok(match answer.first().map(String::as_str) {
            None => Claim::Unknown,
            Some("run") => Claim::Run,
            Some("ran") => Claim::Settle {
                result: result(answer.get(1))?,
                succeeded,
            },
            Some("done") => Claim::Done {
                result: result(answer.get(1))?,
                succeeded,
            },
            Some(_) => Claim::Running,
        })
    }

    async fn ran(
        &self,
        payment_id: &str,
        result: Value,
        succeeded: bool,
    ) -> Result<(), StoreError> {
        self.keep_result(payment_id, "ran", result, succeeded).await
    }

    async fn finish(
        &self,
        payment_id: &str,
        result: Value,
        succeeded: bool,
    ) -> Result<(), StoreError> {
        self.keep_result(payment_id, "done", result, succeeded)
            .await
    }
}
