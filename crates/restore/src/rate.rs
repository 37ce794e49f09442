//! Write-rate control: an optional hard cap, and additive-increase / multiplicative-decrease on
//! throttling: slow down when the service says so, speed back up when it stops.

use std::time::{Duration, Instant};

use tokio::sync::Mutex;

#[derive(Debug)]
struct State {
    /// Current allowed rate in units/s; `None` = unlimited (no cap and never throttled).
    rate: Option<f64>,
    tokens: f64,
    last_refill: Instant,
    last_throttle: Option<Instant>,
    last_increase: Instant,
    /// Units granted in the current one-second window, to know the rate we were running at.
    window_start: Instant,
    window_units: f64,
    observed: f64,
}

/// Units are rows or write CUs, as the caller decides.
#[derive(Debug)]
pub struct AdaptiveRate {
    cap: Option<f64>,
    state: Mutex<State>,
}

/// Never slow below this, so a restore always makes progress.
const MIN_RATE: f64 = 1.0;
const DECREASE: f64 = 0.7;
const INCREASE_PER_SEC: f64 = 1.1;

impl AdaptiveRate {
    /// `cap` in units/s; values below one unit per second (or NaN) count as one.
    pub fn new(cap: Option<f64>) -> Self {
        let now = Instant::now();
        let cap = cap.map(|c| c.max(MIN_RATE));
        AdaptiveRate {
            cap,
            state: Mutex::new(State {
                rate: cap,
                tokens: cap.unwrap_or(0.0),
                last_refill: now,
                last_throttle: None,
                last_increase: now,
                window_start: now,
                window_units: 0.0,
                observed: 0.0,
            }),
        }
    }

    /// The rate in force (None = unlimited).
    pub async fn current(&self) -> Option<f64> {
        self.state.lock().await.rate
    }

    /// Waits until `units` may be spent.
    pub async fn acquire(&self, units: f64) {
        loop {
            let wait = {
                let mut s = self.state.lock().await;
                let now = Instant::now();
                // Track the throughput actually achieved, for the first throttle.
                if now.duration_since(s.window_start) >= Duration::from_secs(1) {
                    s.observed = s.window_units / now.duration_since(s.window_start).as_secs_f64();
                    s.window_start = now;
                    s.window_units = 0.0;
                }
                self.maybe_increase(&mut s, now);
                let Some(rate) = s.rate else {
                    s.window_units += units;
                    return;
                };
                let elapsed = now.duration_since(s.last_refill).as_secs_f64();
                s.tokens = (s.tokens + elapsed * rate).min(rate.max(units));
                s.last_refill = now;
                if s.tokens >= units {
                    s.tokens -= units;
                    s.window_units += units;
                    return;
                }
                // Never panics: a wait that is not a finite number of seconds is capped below.
                Duration::try_from_secs_f64((units - s.tokens) / rate)
                    .unwrap_or(Duration::from_secs(1))
            };
            tokio::time::sleep(wait.min(Duration::from_secs(1))).await;
        }
    }

    /// The service throttled us: cut the rate.
    pub async fn throttled(&self) {
        let mut s = self.state.lock().await;
        let now = Instant::now();
        // Several writers may report the same burst: cut at most once per 200 ms.
        if s.last_throttle
            .is_some_and(|t| now.duration_since(t) < Duration::from_millis(200))
        {
            return;
        }
        let base = match s.rate {
            Some(r) => r,
            None => {
                let in_window =
                    s.window_units / now.duration_since(s.window_start).as_secs_f64().max(0.1);
                s.observed.max(in_window).max(MIN_RATE * 10.0)
            }
        };
        s.rate = Some((base * DECREASE).max(MIN_RATE));
        s.tokens = 0.0;
        s.last_throttle = Some(now);
        s.last_increase = now;
    }

    fn maybe_increase(&self, s: &mut State, now: Instant) {
        let Some(rate) = s.rate else { return };
        let since = now.duration_since(s.last_increase);
        if since < Duration::from_secs(1) {
            return;
        }
        let quiet = s
            .last_throttle
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1));
        if !quiet {
            return;
        }
        let grown = rate * INCREASE_PER_SEC.powf(since.as_secs_f64());
        s.last_increase = now;
        s.rate = match self.cap {
            Some(cap) => Some(grown.min(cap)),
            // Uncapped: once we are well past where throttling started, stop limiting.
            None if grown > s.observed.max(MIN_RATE) * 4.0 => None,
            None => Some(grown),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn throttling_cuts_and_quiet_restores() {
        let r = AdaptiveRate::new(Some(1000.0));
        assert_eq!(r.current().await, Some(1000.0));
        r.throttled().await;
        let cut = r.current().await.unwrap();
        assert!((cut - 700.0).abs() < 1e-6, "{cut}");
        // A second report within the same burst does not cut again.
        r.throttled().await;
        assert_eq!(r.current().await, Some(cut));
        // After a quiet second, acquiring raises the rate again, never past the cap.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        r.acquire(1.0).await;
        let up = r.current().await.unwrap();
        assert!(up > cut && up <= 1000.0, "{up}");
    }

    #[tokio::test]
    async fn uncapped_is_unlimited_until_throttled() {
        let r = AdaptiveRate::new(None);
        for _ in 0..10_000 {
            r.acquire(1.0).await;
        }
        assert_eq!(r.current().await, None);
        r.throttled().await;
        assert!(r.current().await.is_some());
    }
}
