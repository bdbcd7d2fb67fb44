//! A closed-loop load generator: `concurrency` workers send requests back to back for a
//! fixed time over kept-alive connections and record each latency.

use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Stats {
    pub requests: u64,
    pub errors: u64,
    pub elapsed: Duration,
    /// Microseconds, sorted.
    pub latencies: Vec<u64>,
}

impl Stats {
    pub fn per_second(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    pub fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let index = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies[index] as f64 / 1000.0
    }
}

/// Runs `request(i)` from `concurrency` workers for `duration`; a request returns
/// whether it succeeded.
pub async fn run<F, Fut>(concurrency: usize, duration: Duration, request: F) -> Stats
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let request = Arc::new(request);
    let started = Instant::now();
    let deadline = started + duration;
    let workers: Vec<_> = (0..concurrency)
        .map(|worker| {
            let request = request.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut errors = 0u64;
                let mut i = worker as u64;
                while Instant::now() < deadline {
                    let t0 = Instant::now();
                    let ok = request(i).await;
                    latencies.push(t0.elapsed().as_micros() as u64);
                    if !ok {
                        errors += 1;
                    }
                    i += concurrency as u64;
                }
                (latencies, errors)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut errors = 0;
    for worker in workers {
        let (l, e) = worker.await.expect("a load worker");
        latencies.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    Stats {
        requests: latencies.len() as u64,
        errors,
        elapsed,
        latencies,
    }
}
