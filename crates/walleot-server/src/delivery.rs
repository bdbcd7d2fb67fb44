//! The webhook worker, on every instance: hands new events of the outbox to the
//! endpoints that take them (the fan-out), then posts the due deliveries, signed, and
//! records each outcome. A delivery is leased to the worker that took it; if that
//! worker dies, another takes it once the lease is over: every event is delivered at
//! least once, always under its own id.

use crate::domain::events::Outbox;
use crate::domain::ports::{DueDelivery, FanOutTarget, Store, StoreError};
use crate::domain::webhooks::{
    is_public, owed_deliveries, retry_at, sign, DeliveryOutcome, WebhookPolicy,
};
use crate::domain::Clock;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use walleot_api::webhook_headers;

/// Events read from the outbox at a time.
const BATCH: i64 = 500;
/// Deliveries one worker posts at once.
const IN_FLIGHT: i64 = 16;

pub struct Deliverer {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    policy: WebhookPolicy,
    /// For test-mode endpoints: any address.
    open: reqwest::Client,
    /// For live-mode endpoints: public addresses only, unless the operator allows
    /// private ones.
    guarded: reqwest::Client,
    /// The highest `seq` seen, and when: the floor may rise to one seen at least
    /// [`Store::outbox_settle_ms`] ago.
    seen: [VecDeque<(Instant, i64)>; 2],
}

impl Deliverer {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, policy: WebhookPolicy) -> Self {
        let client = |guard: bool| {
            let builder = reqwest::Client::builder()
                .timeout(policy.timeout)
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("Walleot-Webhooks/", env!("CARGO_PKG_VERSION")));
            let builder = match guard {
                true => builder.dns_resolver(Arc::new(PublicOnly)),
                false => builder,
            };
            builder.build().expect("the webhook HTTP client builds")
        };
        Deliverer {
            open: client(false),
            guarded: client(!policy.allow_private_urls),
            store,
            clock,
            policy,
            seen: Default::default(),
        }
    }

    /// Works until the task is dropped.
    pub async fn run(mut self) {
        let mut tick = tokio::time::interval(self.policy.poll_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match self.fan_out().await {
                // No endpoint is enabled: nothing can be due.
                Ok(false) => continue,
                Ok(true) => {}
                Err(e) => tracing::warn!(error = %e, "handing events to webhook endpoints failed"),
            }
            loop {
                match self.deliver_due().await {
                    Ok(n) if n as i64 == IN_FLIGHT => continue,
                    Ok(_) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "delivering webhooks failed");
                        break;
                    }
                }
            }
        }
    }

    /// Gives every enabled endpoint a delivery of each new event it takes, and raises
    /// its floors to the events that can no longer be joined by an earlier one;
    /// answers whether any endpoint is enabled.
    pub async fn fan_out(&mut self) -> Result<bool, StoreError> {
        let targets = self.store.fan_out_targets().await?;
        if targets.is_empty() {
            return Ok(false);
        }
        for (i, outbox) in Outbox::ALL.into_iter().enumerate() {
            let from = targets.iter().map(|t| t.floor(outbox)).min().unwrap_or(0);
            let mut after = from;
            let mut owed = Vec::new();
            loop {
                let events = self.store.outbox_after(outbox, after, BATCH).await?;
                owed.extend(owed_deliveries(&targets, outbox, &events));
                match events.last() {
                    Some(last) => after = last.seq,
                    None => break,
                }
                if (events.len() as i64) < BATCH {
                    break;
                }
            }
            let settled = self.settled(i, after);
            let floors: Vec<(String, i64)> = targets
                .iter()
                .filter(|t| settled > t.floor(outbox))
                .map(|t: &FanOutTarget| (t.endpoint_id.clone(), settled))
                .collect();
            if owed.is_empty() && floors.is_empty() {
                continue;
            }
            self.store
                .enqueue_deliveries(&owed, outbox, &floors, self.clock.now_ms())
                .await?;
        }
        Ok(true)
    }

    /// The highest `seq` of outbox `i` below which no event can still appear, given
    /// that `seen` is visible now.
    fn settled(&mut self, i: usize, seen: i64) -> i64 {
        let settle = self.store.outbox_settle_ms();
        if settle <= 0 {
            return seen;
        }
        let now = Instant::now();
        let seen_at = &mut self.seen[i];
        seen_at.push_back((now, seen));
        let Some(horizon) = now.checked_sub(Duration::from_millis(settle as u64)) else {
            return i64::MIN;
        };
        // The newest observation old enough counts; older ones are of no more use.
        while seen_at.len() > 1 && seen_at[1].0 <= horizon {
            seen_at.pop_front();
        }
        match seen_at.front() {
            Some(&(at, seq)) if at <= horizon => seq,
            _ => i64::MIN,
        }
    }

    /// Posts the deliveries due now; answers how many.
    pub async fn deliver_due(&self) -> Result<usize, StoreError> {
        let now = self.clock.now_ms();
        let due = self
            .store
            .claim_deliveries(now, now + self.policy.lease_ms(), IN_FLIGHT)
            .await?;
        let count = due.len();
        let posts = due.into_iter().map(|delivery| async move {
            let outcome = self.attempt(&delivery).await;
            let now = self.clock.now_ms();
            if let DeliveryOutcome::Failed { error, .. } = &outcome {
                tracing::info!(endpoint = %delivery.endpoint_id, event = %delivery.event_id, %error, "webhook delivery failed");
            }
            let finished = self
                .store
                .finish_delivery(
                    &delivery,
                    &outcome,
                    now,
                    now - self.policy.disable_after_ms,
                )
                .await;
            if let Err(e) = finished {
                // The lease runs out and the delivery is made again.
                tracing::warn!(error = %e, "recording a webhook delivery failed");
            }
        });
        futures::future::join_all(posts).await;
        Ok(count)
    }

    async fn attempt(&self, delivery: &DueDelivery) -> DeliveryOutcome {
        let failed = |error: String| DeliveryOutcome::Failed {
            error,
            retry_at: retry_at(delivery.attempts + 1, self.clock.now_ms()),
        };
        let live = delivery.livemode;
        if live && !self.policy.allow_private_urls && names_private_address(&delivery.url) {
            return failed("the URL is a private address".into());
        }
        let id = &delivery.event_id;
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let signature = sign(&delivery.secret, id, timestamp, delivery.body.as_bytes());
        let client = if live { &self.guarded } else { &self.open };
        let sent = client
            .post(&delivery.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(webhook_headers::ID, id.as_str())
            .header(webhook_headers::TIMESTAMP, timestamp.to_string())
            .header(webhook_headers::SIGNATURE, signature)
            .body(delivery.body.clone())
            .send()
            .await;
        match sent {
            Ok(answer) if answer.status().is_success() => DeliveryOutcome::Delivered,
            Ok(answer) => failed(format!("the endpoint answered {}", answer.status())),
            Err(e) if e.is_timeout() => failed(format!(
                "no answer within {} s",
                self.policy.timeout.as_secs_f64()
            )),
            Err(e) => failed(describe(&e)),
        }
    }
}

/// The error and its causes, on one line.
fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Whether the URL's host is an IP address that is not public (names go through
/// [`PublicOnly`]).
fn names_private_address(url: &str) -> bool {
    match url::Url::parse(url)
        .ok()
        .and_then(|u| u.host().map(|h| h.to_owned()))
    {
        Some(url::Host::Ipv4(ip)) => !is_public(ip.into()),
        Some(url::Host::Ipv6(ip)) => !is_public(ip.into()),
        _ => false,
    }
}

/// Resolves names as the system does, keeping only public addresses: a live endpoint
/// whose name comes to point inside the network after it was checked reaches nothing.
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| is_public(a.ip()))
                .collect();
            if found.is_empty() {
                return Err(format!("{host} resolves to no public address").into());
            }
            Ok(Box::new(found.into_iter()) as reqwest::dns::Addrs)
        })
    }
}
