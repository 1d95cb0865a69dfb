//! Request pacing: a start-time scheduler for the requests-per-second limit, and the adaptive
//! (AIMD) limit on requests in flight.

use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;

/// Hands out start times at least `1 / rate` apart.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    interval: Option<Duration>,
    next: tokio::sync::Mutex<Option<Instant>>,
}

impl RateLimiter {
    pub(crate) fn new(requests_per_second: f64) -> Self {
        let interval = (requests_per_second > 0.0).then(|| Duration::from_secs_f64(1.0 / requests_per_second));
        Self { interval, next: tokio::sync::Mutex::new(None) }
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

/// Full windows of successes at one below the limit that last overloaded the server before that
/// limit is tried again (the server's load may have changed).
const PROBE_AFTER_WINDOWS: usize = 50;

/// The limit's history, for summaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ConcurrencyStats {
    /// `llm.concurrency`, cut to the server's slots when it advertises them.
    pub start: usize,
    /// The limit now.
    pub current: usize,
    pub lowest: usize,
    pub highest: usize,
    /// Halvings (a timeout, 429 or 503 while at the current limit).
    pub decreases: u32,
    /// `total_slots` from the server's `GET /props` (llama.cpp), when it says.
    pub server_slots: Option<usize>,
}

#[derive(Debug)]
struct State {
    limit: usize,
    /// Permits to retire as they come back (a decrease while they were out).
    debt: usize,
    successes: usize,
    /// The limit that last overloaded the server; additive increase stops below it.
    ceiling: Option<usize>,
    windows_at_ceiling: usize,
    /// Bumped on every decrease; an outcome of a request started before counts for nothing.
    epoch: u64,
    stats: ConcurrencyStats,
}

/// Additive increase, multiplicative decrease on the number of requests in flight: halved on
/// overload (timeouts, 429, 503), one more after a window of `limit` successes, never above the
/// server's advertised slots.
#[derive(Debug)]
pub(crate) struct AdaptiveLimit {
    semaphore: Semaphore,
    state: Mutex<State>,
}

/// Leave to send one request; hand its outcome back with [`Permit::success`] or [`Permit::overload`].
pub(crate) struct Permit<'a> {
    permit: Option<SemaphorePermit<'a>>,
    limit: &'a AdaptiveLimit,
    epoch: u64,
}

impl AdaptiveLimit {
    pub(crate) fn new(start: usize) -> Self {
        let start = start.max(1);
        let stats =
            ConcurrencyStats { start, current: start, lowest: start, highest: start, decreases: 0, server_slots: None };
        Self {
            semaphore: Semaphore::new(start),
            state: Mutex::new(State {
                limit: start,
                debt: 0,
                successes: 0,
                ceiling: None,
                windows_at_ceiling: 0,
                epoch: 0,
                stats,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn stats(&self) -> ConcurrencyStats {
        self.lock().stats
    }

    /// Caps the limit at the server's slots (and makes that the start).
    pub(crate) fn cap(&self, slots: usize) {
        let slots = slots.max(1);
        let mut state = self.lock();
        state.stats.server_slots = Some(slots);
        if state.limit > slots {
            self.shrink(&mut state, slots);
            state.stats.start = slots;
            state.stats.highest = slots;
            state.stats.lowest = slots;
        }
    }

    fn shrink(&self, state: &mut State, to: usize) {
        let cut = state.limit - to;
        state.limit = to;
        let forgotten = self.semaphore.forget_permits(cut);
        state.debt += cut - forgotten;
        state.stats.current = to;
        state.stats.lowest = state.stats.lowest.min(to);
    }

    pub(crate) async fn acquire(&self) -> Permit<'_> {
        // The semaphore is never closed; without a permit the request still goes (unlimited).
        let permit = self.semaphore.acquire().await.ok();
        let epoch = self.lock().epoch;
        Permit { permit, limit: self, epoch }
    }
}

impl Permit<'_> {
    pub(crate) fn success(&self) {
        let limit = self.limit;
        let mut state = limit.lock();
        state.successes += 1;
        if state.successes < state.limit {
            return;
        }
        state.successes = 0;
        let next = state.limit + 1;
        if state.stats.server_slots.is_some_and(|slots| next > slots) {
            return;
        }
        if let Some(ceiling) = state.ceiling
            && next >= ceiling
        {
            state.windows_at_ceiling += 1;
            if state.windows_at_ceiling < PROBE_AFTER_WINDOWS {
                return;
            }
            state.ceiling = None;
            state.windows_at_ceiling = 0;
        }
        state.limit = next;
        if state.debt > 0 {
            state.debt -= 1;
        } else {
            limit.semaphore.add_permits(1);
        }
        state.stats.current = next;
        state.stats.highest = state.stats.highest.max(next);
        tracing::debug!(limit = next, "LLM concurrency raised");
    }

    /// The server is overloaded: halve the limit, once per congestion event.
    pub(crate) fn overload(&self) {
        let limit = self.limit;
        let mut state = limit.lock();
        if state.epoch != self.epoch {
            return;
        }
        state.epoch += 1;
        state.successes = 0;
        state.windows_at_ceiling = 0;
        if state.limit <= 1 {
            return;
        }
        state.ceiling = Some(state.limit);
        let to = (state.limit / 2).max(1);
        limit.shrink(&mut state, to);
        state.stats.decreases += 1;
        tracing::info!(limit = to, "LLM endpoint overloaded; concurrency limit halved");
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let Some(permit) = self.permit.take() else { return };
        let mut state = self.limit.lock();
        if state.debt > 0 {
            state.debt -= 1;
            permit.forget();
        }
    }
}
