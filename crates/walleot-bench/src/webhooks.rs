//! `--only webhooks`: what webhooks cost the payment path, and how fast events reach a
//! receiver. Session creations with no endpoint, then with an endpoint taking every
//! event, against a receiver on loopback that answers at once; then the deliveries per
//! second, and how long after the last creation the last of its events arrived.

use crate::scenarios::{creation_load_across, latency, ratio, row, Row, Service};
use crate::Args;
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Counts the deliveries it is posted, and when the last came.
async fn receiver() -> anyhow::Result<(String, Arc<AtomicU64>, Arc<std::sync::Mutex<Instant>>)> {
    let count = Arc::new(AtomicU64::new(0));
    let last = Arc::new(std::sync::Mutex::new(Instant::now()));
    let (c, l) = (count.clone(), last.clone());
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let (c, l) = (c.clone(), l.clone());
            async move {
                c.fetch_add(1, Ordering::Relaxed);
                *l.lock().unwrap() = Instant::now();
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((url, count, last))
}

pub async fn rows(
    client: &reqwest::Client,
    service: &Service,
    args: &Args,
) -> anyhow::Result<Vec<Row>> {
    let bases = [service.server.base.clone()];
    let without = creation_load_across(client, &bases, &service.key, args).await;

    let (url, delivered, last) = receiver().await?;
    let added = client
        .post(format!("{}/v1/webhook_endpoints", service.server.base))
        .bearer_auth(&service.key)
        .json(&json!({ "url": url }))
        .send()
        .await?;
    anyhow::ensure!(
        added.status() == 201,
        "adding the endpoint: {}",
        added.status()
    );
    let started = Instant::now();
    let with = creation_load_across(client, &bases, &service.key, args).await;
    let load_ended = Instant::now();
    let during = delivered.load(Ordering::Relaxed);
    // Every creation made one event; wait for them all (at most a minute).
    let expected = with.requests;
    while delivered.load(Ordering::Relaxed) < expected
        && load_ended.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let total = delivered.load(Ordering::Relaxed);
    let last = *last.lock().unwrap();
    let span = last.duration_since(started).as_secs_f64();
    let behind = last.saturating_duration_since(load_ended).as_secs_f64();
    Ok(vec![
        row(
            "session creations/s with a webhook endpoint taking every event (POST /v1/sessions)",
            format!(
                "{:.0} ({}, {} errors)",
                with.per_second(),
                latency(&with),
                with.errors
            ),
            format!(
                "{:.0} ({}) with no endpoint, same run",
                without.per_second(),
                latency(&without)
            ),
            ratio(with.per_second(), without.per_second()),
        ),
        row(
            "webhook deliveries/s (each event signed and posted to a receiver on loopback)",
            format!(
                "{:.0}: {total} of {expected} events delivered, {during} while the creations ran; the last {behind:.1} s after the last creation",
                total as f64 / span
            ),
            format!("{:.0} creations/s feeding them", with.per_second()),
            ratio(total as f64 / span, with.per_second()),
        ),
    ])
}
