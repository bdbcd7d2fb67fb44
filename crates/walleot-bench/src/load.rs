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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_read_the_sorted_latencies() {
        let stats = Stats {
            requests: 100,
            errors: 0,
            elapsed: Duration::from_secs(2),
            latencies: (1..=100).map(|ms| ms * 1000).collect(),
        };
        assert_eq!(stats.per_second(), 50.0);
        assert_eq!(stats.percentile_ms(0.5), 51.0);
        assert_eq!(stats.percentile_ms(0.99), 99.0);
        assert_eq!(stats.percentile_ms(1.0), 100.0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_request_is_counted_and_failures_are_errors() {
        let stats = run(4, Duration::from_millis(100), |i| async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            i % 2 == 0
        })
        .await;
        assert!(stats.requests > 8, "{}", stats.requests);
        assert_eq!(stats.latencies.len() as u64, stats.requests);
        assert!(stats.errors > 0 && stats.errors < stats.requests);
        assert!(stats.latencies.windows(2).all(|w| w[0] <= w[1]), "sorted");
    }
}
