//! Request pacing: a start-time scheduler for the requests-per-second limit.

use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// Hands out start times at least `1 / rate` apart.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    interval: Option<Duration>,
    next: Mutex<Option<Instant>>,
}

impl RateLimiter {
    pub(crate) fn new(requests_per_second: f64) -> Self {
        let interval = (requests_per_second > 0.0).then(|| Duration::from_secs_f64(1.0 / requests_per_second));
        Self { interval, next: Mutex::new(None) }
    }

    /// Waits until this caller may start a request.
    pub(crate) async fn acquire(&self) {
        let Some(interval) = self.interval else { return };
        let slot = {
            let mut next = self.next.lock().await;
            let now = Instant::now();
            let slot = next.map_or(now, |at| at.max(now));
            *next = Some(slot + interval);
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}
