//! The webhook worker, on every instance: hands new events of the outbox to the
//! endpoints that take them (the fan-out), then posts the due deliveries, signed, and
//! records each outcome. A delivery is leased to the worker that took it; if that
//! worker dies, another takes it once the lease is over: every event is delivered at
//! least once, always under its own id.

use crate::domain::events::Outbox;
use crate::domain::ports::{DueDelivery, Store, StoreError};
use crate::domain::webhooks::{
    owed_deliveries, retry_at, sign, DeliveryOutcome, Reach, WebhookPolicy,
};
use crate::domain::Clock;
use std::collections::{BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::task::JoinSet;
use walleot_api::webhook_headers;

/// Events read from an outbox at a time.
const BATCH: i64 = 500;
/// Batches read from an outbox in one round: a long backlog (an endpoint enabled again
/// after days) is handed out over several rounds.
const BATCHES_PER_ROUND: usize = 10;
/// Deliveries one worker posts at once.
const IN_FLIGHT: usize = 32;

pub struct Deliverer {
    poster: Poster,
    fan_out: FanOut,
}

impl Deliverer {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, policy: WebhookPolicy) -> Self {
        Deliverer {
            fan_out: FanOut {
                store: store.clone(),
                clock: clock.clone(),
                pending: Default::default(),
                settled: [i64::MIN; 2],
                enqueued: Default::default(),
                targets: Vec::new(),
            },
            poster: Poster::new(store, clock, policy),
        }
    }

    /// Works until the task is dropped (the posts in flight with it).
    pub async fn run(mut self) {
        let mut tick = tokio::time::interval(self.poster.policy.poll_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut in_flight = JoinSet::new();
        loop {
            // A round: new events handed out, then as many due deliveries taken as
            // there is room for; a finished post makes room at once.
            let ticked = tokio::select! {
                _ = tick.tick() => match self.fan_out.round().await {
                    // No endpoint is enabled: nothing can be due.
                    Ok(false) => continue,
                    Ok(true) => true,
                    Err(e) => {
                        tracing::warn!(error = %e, "handing events to webhook endpoints failed");
                        true
                    }
                },
                Some(_) = in_flight.join_next(), if !in_flight.is_empty() => false,
            };
            while in_flight.try_join_next().is_some() {}
            let room = IN_FLIGHT - in_flight.len();
            // Between rounds, take more only once half the posts are done: each taking
            // reads the due deliveries.
            if room == 0 || (!ticked && room < IN_FLIGHT / 2) {
                continue;
            }
            match self.poster.claim(room).await {
                Ok(due) => {
                    for delivery in due {
                        let poster = self.poster.clone();
                        in_flight.spawn(async move { poster.deliver(delivery).await });
                    }
                }
                Err(e) => tracing::warn!(error = %e, "taking due webhook deliveries failed"),
            }
        }
    }
}

/// The fan-out: events of each outbox above the endpoints' floors become deliveries.
struct FanOut {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    /// Per outbox: the highest `seq` seen in a round, with the transactions then
    /// running (see [`Store::outbox_horizon`]), until they have all ended.
    pending: [VecDeque<(i64, i64)>; 2],
    /// Per outbox: below this `seq` no event can still appear.
    settled: [i64; 2],
    /// Per outbox: events above the floors already handed out by this worker, to the
    /// endpoints of `targets`.
    enqueued: [BTreeSet<i64>; 2],
    targets: Vec<String>,
}

impl FanOut {
    /// Gives every enabled endpoint a delivery of each new event it takes, and raises
    /// its floors to the events that can no longer be joined by an earlier one;
    /// answers whether any endpoint is enabled.
    async fn round(&mut self) -> Result<bool, StoreError> {
        let targets = self.store.fan_out_targets().await?;
        if targets.is_empty() {
            return Ok(false);
        }
        let ids: Vec<String> = targets.iter().map(|t| t.endpoint_id.clone()).collect();
        if ids != self.targets {
            // An endpoint enabled again owes events that were handed to the others.
            self.enqueued = Default::default();
            self.targets = ids;
        }
        for (i, outbox) in Outbox::ALL.into_iter().enumerate() {
            let from = targets.iter().map(|t| t.floor(outbox)).min().unwrap_or(0);
            self.enqueued[i] = self.enqueued[i].split_off(&(from + 1));
            let mut after = from;
            let mut owed = Vec::new();
            let mut handed = Vec::new();
            for _ in 0..BATCHES_PER_ROUND {
                let events = self.store.outbox_after(outbox, after, BATCH).await?;
                let fresh: Vec<_> = events
                    .iter()
                    .filter(|e| !self.enqueued[i].contains(&e.seq))
                    .cloned()
                    .collect();
                owed.extend(owed_deliveries(&targets, outbox, &fresh));
                handed.extend(fresh.iter().map(|e| e.seq));
                match events.last() {
                    Some(last) => after = last.seq,
                    None => break,
                }
                if (events.len() as i64) < BATCH {
                    break;
                }
            }
            let settled = self.settled(i, after).await?;
            let floors: Vec<(String, i64)> = targets
                .iter()
                .filter(|t| settled > t.floor(outbox))
                .map(|t| (t.endpoint_id.clone(), settled))
                .collect();
            if owed.is_empty() && floors.is_empty() {
                self.enqueued[i].extend(handed);
                continue;
            }
            self.store
                .enqueue_deliveries(&owed, outbox, &floors, self.clock.now_ms())
                .await?;
            self.enqueued[i].extend(handed);
        }
        Ok(true)
    }

    /// The highest `seq` of outbox `i` below which no event can still appear, given
    /// that `seen` is visible now: where commits follow `seq`, `seen` itself; else the
    /// highest seen before every transaction then running had ended.
    async fn settled(&mut self, i: usize, seen: i64) -> Result<i64, StoreError> {
        let Some((oldest_running, next_to_start)) = self.store.outbox_horizon().await? else {
            return Ok(seen);
        };
        self.pending[i].push_back((next_to_start, seen));
        while let Some(&(then_next, seq)) = self.pending[i].front() {
            if then_next > oldest_running {
                break;
            }
            self.settled[i] = self.settled[i].max(seq);
            self.pending[i].pop_front();
        }
        Ok(self.settled[i])
    }
}

/// Takes due deliveries and posts them.
#[derive(Clone)]
struct Poster {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    policy: WebhookPolicy,
    /// One client per reach, each resolving names to the addresses it allows.
    public: reqwest::Client,
    local: reqwest::Client,
    anywhere: reqwest::Client,
}

impl Poster {
    fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, policy: WebhookPolicy) -> Self {
        let client = |reach: Reach| {
            let builder = reqwest::Client::builder()
                .timeout(policy.timeout)
                .redirect(reqwest::redirect::Policy::none())
                // A proxy would resolve the names itself, out of the guard's sight.
                .no_proxy()
                .user_agent(concat!("Walleot-Webhooks/", env!("CARGO_PKG_VERSION")));
            let builder = match reach {
                Reach::Anywhere => builder,
                reach => builder.dns_resolver(Arc::new(Guard(reach))),
            };
            builder.build().expect("the webhook HTTP client builds")
        };
        Poster {
            public: client(Reach::Public),
            local: client(Reach::Local),
            anywhere: client(Reach::Anywhere),
            store,
            clock,
            policy,
        }
    }

    async fn claim(&self, room: usize) -> Result<Vec<DueDelivery>, StoreError> {
        let now = self.clock.now_ms();
        self.store
            .claim_deliveries(now, now + self.policy.lease_ms(), room as i64)
            .await
    }

    /// Posts one delivery and records how it went.
    async fn deliver(&self, delivery: DueDelivery) {
        let outcome = self.attempt(&delivery).await;
        let now = self.clock.now_ms();
        if let DeliveryOutcome::Failed { error, .. } = &outcome {
            tracing::info!(endpoint = %delivery.endpoint_id, event = %delivery.event_id, %error, "webhook delivery failed");
        }
        let finished = self
            .store
            .finish_delivery(&delivery, &outcome, now, now - self.policy.disable_after_ms)
            .await;
        if let Err(e) = finished {
            // The lease runs out and the delivery is made again.
            tracing::warn!(error = %e, "recording a webhook delivery failed");
        }
    }

    async fn attempt(&self, delivery: &DueDelivery) -> DeliveryOutcome {
        let failed = |error: String| DeliveryOutcome::Failed {
            error,
            retry_at: retry_at(delivery.attempts + 1, self.clock.now_ms()),
        };
        let reach = self.policy.reach(delivery.livemode);
        if names_address_beyond(&delivery.url, reach) {
            return failed("the URL's address may not be reached".into());
        }
        let id = &delivery.event_id;
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let signature = sign(&delivery.secret, id, timestamp, delivery.body.as_bytes());
        let client = match reach {
            Reach::Public => &self.public,
            Reach::Local => &self.local,
            Reach::Anywhere => &self.anywhere,
        };
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

/// Whether the URL's host is an IP address beyond `reach` (names go through
/// [`Guard`]).
fn names_address_beyond(url: &str, reach: Reach) -> bool {
    match url::Url::parse(url)
        .ok()
        .and_then(|u| u.host().map(|h| h.to_owned()))
    {
        Some(url::Host::Ipv4(ip)) => !reach.allows(ip.into()),
        Some(url::Host::Ipv6(ip)) => !reach.allows(ip.into()),
        _ => false,
    }
}

/// Resolves names as the system does, keeping only the addresses within reach: an
/// endpoint whose name comes to point elsewhere after it was checked reaches nothing.
struct Guard(Reach);

impl reqwest::dns::Resolve for Guard {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        let reach = self.0;
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| reach.allows(a.ip()))
                .collect();
            if found.is_empty() {
                return Err(format!("{host} resolves to no address that may be reached").into());
            }
            Ok(Box::new(found.into_iter()) as reqwest::dns::Addrs)
        })
    }
}
