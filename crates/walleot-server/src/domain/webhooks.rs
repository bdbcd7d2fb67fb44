//! Webhooks: the merchant's endpoints, the rules of what may be one, and what each
//! delivery carries (the Standard Webhooks scheme: `webhook-id`, `webhook-timestamp`
//! and a `v1,` HMAC-SHA256 signature of `id.timestamp.body`). The worker that posts
//! them is `crate::delivery`.

use super::events::{EventRecord, Outbox};
use super::ports::{FanOutTarget, NewDelivery, OutboxEvent, Store};
use super::{ids, Clock, DomainError, Principal};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;
use walleot_api::{EventType, WebhookEndpointStatus};

/// Endpoints a merchant may have in one mode.
pub const MAX_ENDPOINTS: i64 = 16;
/// The longest endpoint URL.
pub const MAX_URL_LEN: usize = 2048;

/// Waits before the second to the eighth attempt, after the one before failed:
/// 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (the first is at once).
pub const RETRY_AFTER_MS: [i64; 7] = [
    5_000,
    5 * 60_000,
    30 * 60_000,
    2 * 3_600_000,
    5 * 3_600_000,
    10 * 3_600_000,
    10 * 3_600_000,
];

/// When the next attempt is due after `attempts` attempts have failed; `None` once
/// they are all spent.
pub fn retry_at(attempts: i64, now: i64) -> Option<i64> {
    usize::try_from(attempts - 1)
        .ok()
        .and_then(|i| RETRY_AFTER_MS.get(i))
        .map(|wait| now + wait)
}

/// How the service delivers webhooks.
#[derive(Debug, Clone)]
pub struct WebhookPolicy {
    /// Live endpoints may be on private, loopback or link-local addresses (an operator's
    /// own network); refused by default.
    pub allow_private_urls: bool,
    /// How long a receiver has to answer an attempt.
    pub timeout: Duration,
    /// An endpoint whose deliveries have failed without a success for this long is
    /// disabled.
    pub disable_after_ms: i64,
    /// How often each instance looks for events to deliver.
    pub poll_every: Duration,
}

impl Default for WebhookPolicy {
    fn default() -> Self {
        WebhookPolicy {
            allow_private_urls: false,
            timeout: Duration::from_secs(10),
            disable_after_ms: 5 * 24 * 3_600_000,
            poll_every: Duration::from_millis(500),
        }
    }
}

impl WebhookPolicy {
    /// How long a worker keeps a delivery it took: past it, another worker (after a
    /// crash) takes it over.
    pub fn lease_ms(&self) -> i64 {
        self.timeout.as_millis() as i64 + 10_000
    }

    /// The addresses endpoints of a mode may reach.
    pub fn reach(&self, livemode: bool) -> Reach {
        match (self.allow_private_urls, livemode) {
            (true, _) => Reach::Anywhere,
            (false, true) => Reach::Public,
            (false, false) => Reach::Local,
        }
    }
}

/// Which addresses a delivery may go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// The public internet only: live endpoints.
    Public,
    /// Also this machine and private networks, but not link-local addresses (where
    /// clouds answer with their instances' credentials): test endpoints.
    Local,
    /// Any address, as the operator allowed.
    Anywhere,
}

impl Reach {
    pub fn allows(self, ip: IpAddr) -> bool {
        match self {
            Reach::Public => is_public(ip),
            Reach::Local => !is_link_local(ip),
            Reach::Anywhere => true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookEndpointRecord {
    pub id: String,
    pub merchant_id: String,
    pub livemode: bool,
    pub url: String,
    pub events: Option<Vec<EventType>>,
    pub secret: String,
    pub status: WebhookEndpointStatus,
    pub disabled_reason: Option<String>,
    pub failing_since: Option<i64>,
    pub created_at: i64,
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    Delivered,
    /// The receiver failed, answered other than 2xx, or did not answer in time;
    /// `retry_at` is `None` when no attempt is left.
    Failed {
        error: String,
        retry_at: Option<i64>,
    },
}

/// The text of an endpoint's `events` column: types separated by spaces.
pub fn events_text(events: &Option<Vec<EventType>>) -> Option<String> {
    events.as_ref().map(|events| {
        events
            .iter()
            .map(|e| e.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    })
}

/// The reverse of [`events_text`]; unknown names (of a newer version) are skipped.
pub fn parse_events(text: Option<&str>) -> Option<Vec<EventType>> {
    text.map(|t| t.split(' ').filter_map(|e| e.parse().ok()).collect())
}

#[derive(Clone)]
pub struct Webhooks {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    policy: WebhookPolicy,
}

impl Webhooks {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, policy: WebhookPolicy) -> Self {
        Webhooks {
            store,
            clock,
            policy,
        }
    }

    pub fn policy(&self) -> &WebhookPolicy {
        &self.policy
    }

    /// A new endpoint of the key's merchant and mode, with its secret.
    pub async fn create(
        &self,
        owner: &Principal,
        url: &str,
        events: Option<Vec<EventType>>,
    ) -> Result<WebhookEndpointRecord, DomainError> {
        let livemode = owner.mode.is_live();
        check_url(url, livemode, self.policy.reach(livemode)).await?;
        let events = match events {
            Some(list) if list.is_empty() => {
                return Err(invalid(
                    "events",
                    "must name at least one type; leave it out for every type",
                ))
            }
            Some(mut list) => {
                list.sort_by_key(|e| e.as_str());
                list.dedup();
                Some(list)
            }
            None => None,
        };
        let endpoint = WebhookEndpointRecord {
            id: ids::new_id("we"),
            merchant_id: owner.merchant_id.clone(),
            livemode,
            url: url.to_string(),
            events,
            secret: new_secret(),
            status: WebhookEndpointStatus::Enabled,
            disabled_reason: None,
            failing_since: None,
            created_at: self.clock.now_ms(),
        };
        if !self
            .store
            .insert_webhook_endpoint(&endpoint, MAX_ENDPOINTS)
            .await?
        {
            return Err(DomainError::Conflict(format!(
                "a merchant may have at most {MAX_ENDPOINTS} webhook endpoints in each mode; \
                 delete one first"
            )));
        }
        Ok(endpoint)
    }

    pub async fn list(&self, owner: &Principal) -> Result<Vec<WebhookEndpointRecord>, DomainError> {
        Ok(self
            .store
            .webhook_endpoints(&owner.merchant_id, owner.mode.is_live())
            .await?)
    }

    pub async fn get(
        &self,
        owner: &Principal,
        id: &str,
    ) -> Result<WebhookEndpointRecord, DomainError> {
        let found = match ids::has_shape(id, "we") {
            true => {
                self.store
                    .webhook_endpoint(&owner.merchant_id, owner.mode.is_live(), id)
                    .await?
            }
            false => None,
        };
        found.ok_or_else(|| no_endpoint(id))
    }

    /// Deletes an endpoint (or enables it again): nothing more is sent to a deleted
    /// endpoint; an enabled one is sent what it missed while disabled.
    pub async fn set_status(
        &self,
        owner: &Principal,
        id: &str,
        status: WebhookEndpointStatus,
    ) -> Result<WebhookEndpointRecord, DomainError> {
        if !ids::has_shape(id, "we") {
            return Err(no_endpoint(id));
        }
        self.store
            .set_webhook_endpoint_status(
                &owner.merchant_id,
                owner.mode.is_live(),
                id,
                status,
                self.clock.now_ms(),
            )
            .await?
            .ok_or_else(|| no_endpoint(id))
    }

    /// Sends an event of the key's merchant and mode again to each enabled endpoint
    /// that takes its type, with the same `webhook-id`; answers those endpoints.
    pub async fn redeliver(
        &self,
        owner: &Principal,
        event_id: &str,
    ) -> Result<Vec<String>, DomainError> {
        let event = self.find_event(event_id).await?;
        if event.merchant_id != owner.merchant_id || event.livemode != owner.mode.is_live() {
            return Err(no_event(event_id));
        }
        self.redeliver_event(&event).await
    }

    /// [`Self::redeliver`] for the operator, whoever's event it is.
    pub async fn redeliver_any(&self, event_id: &str) -> Result<Vec<String>, DomainError> {
        let event = self.find_event(event_id).await?;
        self.redeliver_event(&event).await
    }

    async fn find_event(&self, event_id: &str) -> Result<EventRecord, DomainError> {
        let found = match ids::has_shape(event_id, "evt") {
            true => self.store.find_event(event_id).await?,
            false => None,
        };
        found.ok_or_else(|| no_event(event_id))
    }

    async fn redeliver_event(&self, event: &EventRecord) -> Result<Vec<String>, DomainError> {
        let body = body_of(event);
        let deliveries: Vec<NewDelivery> = self
            .store
            .webhook_endpoints(&event.merchant_id, event.livemode)
            .await?
            .into_iter()
            .filter(|e| e.status == WebhookEndpointStatus::Enabled)
            .filter(|e| takes(&e.events, &event.kind))
            .map(|e| NewDelivery {
                endpoint_id: e.id,
                event_id: event.id.clone(),
                body: body.clone(),
            })
            .collect();
        self.store
            .redeliver(&deliveries, self.clock.now_ms())
            .await?;
        Ok(deliveries.into_iter().map(|d| d.endpoint_id).collect())
    }
}

fn invalid(field: &'static str, message: &str) -> DomainError {
    DomainError::Invalid {
        field,
        message: message.to_string(),
    }
}

fn no_endpoint(id: &str) -> DomainError {
    DomainError::NotFound(format!("no webhook endpoint {id}"))
}

fn no_event(id: &str) -> DomainError {
    DomainError::NotFound(format!("no event {id}"))
}

fn takes(events: &Option<Vec<EventType>>, kind: &str) -> bool {
    events
        .as_ref()
        .is_none_or(|list| list.iter().any(|e| e.as_str() == kind))
}

/// The deliveries that the events of one outbox owe to the endpoints: each event above
/// an endpoint's floor, of its merchant and mode, of a type it takes.
pub fn owed_deliveries(
    targets: &[FanOutTarget],
    outbox: Outbox,
    events: &[OutboxEvent],
) -> Vec<NewDelivery> {
    let mut owed = Vec::new();
    for OutboxEvent { seq, event } in events {
        let mut body = None;
        for target in targets {
            if *seq > target.floor(outbox)
                && target.merchant_id == event.merchant_id
                && target.livemode == event.livemode
                && takes(&target.events, &event.kind)
            {
                let body = body.get_or_insert_with(|| body_of(event)).clone();
                owed.push(NewDelivery {
                    endpoint_id: target.endpoint_id.clone(),
                    event_id: event.id.clone(),
                    body,
                });
            }
        }
    }
    owed
}

/// What a delivery posts: the event as `GET /v1/events` lists it.
pub fn body_of(event: &EventRecord) -> String {
    serde_json::to_string(&event.to_wire()).expect("an event serializes")
}

/// `whsec_` and 24 random bytes in base64: the secret a receiver checks signatures with.
pub fn new_secret() -> String {
    let mut key = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut key);
    format!("whsec_{}", STANDARD.encode(key))
}

/// The `webhook-signature` of a delivery: `v1,` and the base64 HMAC-SHA256, keyed by
/// the secret's decoded bytes, of `id.timestamp.body`.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
    let key = secret
        .strip_prefix("whsec_")
        .and_then(|k| STANDARD.decode(k).ok())
        .unwrap_or_else(|| secret.as_bytes().to_vec());
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes a key of any length");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// Whether an address is on the public internet: not loopback, private, link-local,
/// shared (carrier-grade NAT), documentation, multicast, unspecified or reserved.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            let [first, second, ..] = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link-local
                || (first & 0xffc0) == 0xfec0 // site-local (deprecated)
                || first == 0x2001 && second == 0x0db8 // documentation
                || first == 0x0064 && second == 0xff9b // NAT64, to anything
                || first == 0x2002 // 6to4, to anything
                || v6.segments()[..6] == [0; 6]) // IPv4-compatible, to anything
        }
    }
}

/// Link-local addresses, IPv4 (169.254/16) and IPv6 (fe80::/10).
pub fn is_link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.is_link_local(),
            None => (v6.segments()[0] & 0xffc0) == 0xfe80,
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space
        || (a == 192 && b == 0 && c == 0) // protocol assignments
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || a >= 240)
}

/// The rules of an endpoint URL: `http(s)`, no longer than [`MAX_URL_LEN`], no
/// fragment; in live mode `https` only. The host must be within `reach`: checked here
/// for an address, and for a name resolved here in live mode; every delivery checks
/// the addresses it connects to again.
async fn check_url(raw: &str, livemode: bool, reach: Reach) -> Result<(), DomainError> {
    if raw.len() > MAX_URL_LEN {
        return Err(invalid("url", "must be at most 2048 characters"));
    }
    let url = url::Url::parse(raw)
        .map_err(|e| invalid("url", &format!("is not an absolute URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("url", "must be an http:// or https:// URL"));
    }
    if url.fragment().is_some() {
        return Err(invalid("url", "must not have a #fragment"));
    }
    let Some(host) = url.host() else {
        return Err(invalid("url", "must name a host"));
    };
    if livemode && url.scheme() != "https" {
        return Err(invalid(
            "url",
            "must be an https:// URL in live mode (test mode also takes http://)",
        ));
    }
    let addresses: Vec<IpAddr> = match host {
        url::Host::Ipv4(ip) => vec![IpAddr::V4(ip)],
        url::Host::Ipv6(ip) => vec![IpAddr::V6(ip)],
        url::Host::Domain(_) if reach != Reach::Public => return Ok(()),
        url::Host::Domain(name) => {
            let port = url.port_or_known_default().unwrap_or(443);
            let lookup = tokio::net::lookup_host((name, port));
            match tokio::time::timeout(Duration::from_secs(5), lookup).await {
                Ok(Ok(found)) => found.map(|a| a.ip()).collect(),
                _ => {
                    return Err(invalid(
                        "url",
                        "names a host that does not resolve; live endpoints must be reachable \
                         on the public internet",
                    ))
                }
            }
        }
    };
    if addresses.is_empty() || addresses.iter().any(|ip| !reach.allows(*ip)) {
        return Err(invalid(
            "url",
            match reach {
                Reach::Local => "is a link-local address, which endpoints may not reach",
                _ => {
                    "resolves to a private, loopback or link-local address, which live mode \
                     refuses (an operator may allow them with --webhook-allow-private-urls)"
                }
            },
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_follow_the_standard_webhooks_scheme() {
        // The example of the Standard Webhooks specification.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn the_schedule_has_eight_attempts() {
        assert_eq!(retry_at(1, 0), Some(5_000));
        assert_eq!(retry_at(2, 0), Some(300_000));
        assert_eq!(retry_at(7, 0), Some(36_000_000));
        assert_eq!(retry_at(8, 0), None);
    }

    #[test]
    fn only_public_addresses_are_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "2002:7f00:1::1",
            "64:ff9b:1::a00:1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in ["93.184.215.14", "1.1.1.1", "2606:4700:4700::1111"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[tokio::test]
    async fn live_urls_must_be_https_on_public_addresses() {
        for refused in [
            "http://93.184.215.14/hook",
            "https://127.0.0.1/hook",
            "https://[::1]:8443/hook",
            "https://10.0.0.8/hook",
            "https://169.254.169.254/latest",
            "https://localhost/hook",
            "ftp://93.184.215.14/",
            "https://93.184.215.14/#x",
            "not a url",
        ] {
            assert!(
                check_url(refused, true, Reach::Public).await.is_err(),
                "{refused}"
            );
        }
        check_url("https://93.184.215.14/hook", true, Reach::Public)
            .await
            .unwrap();
        check_url("https://127.0.0.1/hook", true, Reach::Anywhere)
            .await
            .unwrap();
        for test_mode in [
            "http://127.0.0.1:9/hook",
            "http://10.0.0.8/",
            "http://receiver.test/",
        ] {
            check_url(test_mode, false, Reach::Local).await.unwrap();
        }
        for metadata in [
            "http://169.254.169.254/latest",
            "http://[fe80::1]/",
            "http://[::ffff:169.254.1.1]/",
        ] {
            assert!(
                check_url(metadata, false, Reach::Local).await.is_err(),
                "{metadata}"
            );
        }
    }
}
