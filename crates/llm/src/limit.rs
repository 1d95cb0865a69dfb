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
    /// The most the limit may reach: `start`, or `llm.probe_concurrency` when that is set and
    /// the server advertises no slots.
    pub ceiling: usize,
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
    overloaded_at: Option<usize>,
    windows_at_overload: usize,
    /// Bumped on every decrease; an outcome of a request started before counts for nothing.
    epoch: u64,
    stats: ConcurrencyStats,
}

/// Additive increase, multiplicative decrease on the number of requests in flight: halved on
/// overload (timeouts, 429, 503), one more after a window of `limit` successes, never above the
/// ceiling (`llm.concurrency`, or `llm.probe_concurrency` while the server advertises no slots)
/// nor the server's advertised slots.
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
    /// Starts at `start`; additive increase may go up to `probe` (at least `start`) until the
    /// server advertises its slots.
    pub(crate) fn new(start: usize, probe: Option<usize>) -> Self {
        let start = start.max(1);
        let ceiling = probe.map_or(start, |probe| probe.max(start));
        let stats = ConcurrencyStats {
            start,
            ceiling,
            current: start,
            lowest: start,
            highest: start,
            decreases: 0,
            server_slots: None,
        };
        Self {
            semaphore: Semaphore::new(start),
            state: Mutex::new(State {
                limit: start,
                debt: 0,
                successes: 0,
                overloaded_at: None,
                windows_at_overload: 0,
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

    /// The server advertises `slots`: the ceiling becomes `llm.concurrency` cut to the slots (no
    /// probing above the config once the server says), and the start too. Called before any
    /// request, so the limit is still the start.
    pub(crate) fn cap(&self, slots: usize) {
        let slots = slots.max(1);
        let mut state = self.lock();
        state.stats.server_slots = Some(slots);
        let ceiling = state.stats.start.min(slots);
        state.stats.ceiling = ceiling;
        if state.limit > ceiling {
            self.shrink(&mut state, ceiling);
            state.stats.start = ceiling;
            state.stats.highest = ceiling;
            state.stats.lowest = ceiling;
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
        if next > state.stats.ceiling {
            return;
        }
        if let Some(overloaded_at) = state.overloaded_at
            && next >= overloaded_at
        {
            state.windows_at_overload += 1;
            if state.windows_at_overload < PROBE_AFTER_WINDOWS {
                return;
            }
            state.overloaded_at = None;
            state.windows_at_overload = 0;
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
        state.windows_at_overload = 0;
        if state.limit <= 1 {
            return;
        }
        state.overloaded_at = Some(state.limit);
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
