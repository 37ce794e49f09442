//! Fault injection (off by default) and the emulator's counters.
//!
//! Every fault is decided before a request (or a BatchWriteRow row) touches storage, so a faulted
//! request changes nothing. Decisions come from one seedable RNG so that tests can be deterministic.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use ots_wire::types::PkValue;

use crate::error::ApiError;

/// What to inject. Rates are probabilities in [0, 1]; 0 disables a fault.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FaultConfig {
    /// Answer with OTSServerBusy, OTSNotEnoughCapacityUnit or OTSQuotaExhausted ("Too frequent table
    /// operations."), chosen uniformly.
    pub throttle_rate: f64,
    /// Answer with OTSInternalServerError (500), OTSServerUnavailable or OTSTimeout (503).
    pub server_error_rate: f64,
    /// Fail a BatchWriteRow row with OTSServerBusy or OTSRowOperationConflict (HTTP 200, row not
    /// written).
    pub row_error_rate: f64,
    /// Close the connection without answering (the request is not executed).
    pub drop_connection_rate: f64,
    /// Added to every request before it runs.
    pub latency: Duration,
    /// Read capacity units per second for the whole instance; exceeding it answers
    /// OTSNotEnoughCapacityUnit. `None` = unlimited.
    pub read_cu_per_sec: Option<u32>,
    pub write_cu_per_sec: Option<u32>,
    /// Seed for the fault RNG; `None` seeds from the OS.
    pub seed: Option<u64>,
    /// Fail every BatchWriteRow row whose primary key holds this STRING value, in any table,
    /// with a non-retryable error (OTSParameterInvalid, HTTP 200, row not written): one row that
    /// fails for good while the others succeed.
    pub fail_rows_with_key: Option<String>,
}

impl FaultConfig {
    pub fn is_active(&self) -> bool {
        self.throttle_rate > 0.0
            || self.server_error_rate > 0.0
            || self.row_error_rate > 0.0
            || self.drop_connection_rate > 0.0
            || !self.latency.is_zero()
            || self.read_cu_per_sec.is_some()
            || self.write_cu_per_sec.is_some()
            || self.fail_rows_with_key.is_some()
    }

    /// Rejects rates outside [0, 1] (and NaN).
    pub fn validate(&self) -> Result<(), String> {
        for (name, r) in [
            ("throttle rate", self.throttle_rate),
            ("server error rate", self.server_error_rate),
            ("row error rate", self.row_error_rate),
            ("drop connection rate", self.drop_connection_rate),
        ] {
            if !(0.0..=1.0).contains(&r) {
                return Err(format!("the {name} must be between 0 and 1, got {r}"));
            }
        }
        Ok(())
    }
}

/// A snapshot of what the emulator has served and injected.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EmulatorStats {
    /// Every HTTP request received.
    pub requests: u64,
    /// Requests refused by signature/MD5/date/AK/instance checks.
    pub auth_failures: u64,
    /// Error responses of any kind (injected ones included).
    pub errors: u64,
    pub injected_throttles: u64,
    pub injected_server_errors: u64,
    pub injected_row_errors: u64,
    pub dropped_connections: u64,
    pub delayed_requests: u64,
    /// Requests refused by the read/write CU budget.
    pub cu_throttled: u64,
    /// Authenticated requests per action name.
    pub actions: BTreeMap<String, u64>,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub requests: AtomicU64,
    pub auth_failures: AtomicU64,
    pub errors: AtomicU64,
    pub throttles: AtomicU64,
    pub server_errors: AtomicU64,
    pub row_errors: AtomicU64,
    pub dropped: AtomicU64,
    pub delayed: AtomicU64,
    pub cu_throttled: AtomicU64,
    pub actions: Mutex<BTreeMap<String, u64>>,
}

pub(crate) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    pub fn snapshot(&self) -> EmulatorStats {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        EmulatorStats {
            requests: l(&self.requests),
            auth_failures: l(&self.auth_failures),
            errors: l(&self.errors),
            injected_throttles: l(&self.throttles),
            injected_server_errors: l(&self.server_errors),
            injected_row_errors: l(&self.row_errors),
            dropped_connections: l(&self.dropped),
            delayed_requests: l(&self.delayed),
            cu_throttled: l(&self.cu_throttled),
            actions: self
                .actions
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }

    pub fn count_action(&self, action: &str) {
        let mut m = self.actions.lock().unwrap_or_else(|e| e.into_inner());
        match m.get_mut(action) {
            Some(n) => *n += 1,
            None => {
                m.insert(action.to_string(), 1);
            }
        }
    }
}

/// A token bucket holding up to one second of capacity. Consumption may drive it negative (the
/// service charges the real cost after the fact); while it is not positive, requests are refused.
struct Bucket {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: u32) -> Self {
        Bucket {
            rate: f64::from(rate),
            tokens: f64::from(rate),
            last: Instant::now(),
        }
    }

    fn refill(&mut self) {
        let now = Instant::now();
        let dt = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate).min(self.rate);
    }
}

/// What the request-level fault roll decided.
pub(crate) enum Injected {
    None,
    Drop,
    Error(ApiError),
}

/// Whether an operation draws on the read or the write budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CuKind {
    Read,
    Write,
    /// Table operations: never throttled by the CU budget.
    Table,
}

pub(crate) struct FaultState {
    inner: Mutex<FaultInner>,
}

struct FaultInner {
    config: FaultConfig,
    rng: StdRng,
    read: Option<Bucket>,
    write: Option<Bucket>,
}

fn rng_for(config: &FaultConfig) -> StdRng {
    match config.seed {
        Some(s) => StdRng::seed_from_u64(s),
        None => StdRng::from_os_rng(),
    }
}

impl FaultState {
    pub fn new(config: FaultConfig) -> Self {
        FaultState {
            inner: Mutex::new(FaultInner {
                rng: rng_for(&config),
                read: config.read_cu_per_sec.map(Bucket::new),
                write: config.write_cu_per_sec.map(Bucket::new),
                config,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FaultInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set(&self, config: FaultConfig) {
        let mut g = self.lock();
        g.rng = rng_for(&config);
        g.read = config.read_cu_per_sec.map(Bucket::new);
        g.write = config.write_cu_per_sec.map(Bucket::new);
        g.config = config;
    }

    pub fn config(&self) -> FaultConfig {
        self.lock().config.clone()
    }

    pub fn latency(&self) -> Duration {
        self.lock().config.latency
    }

    /// Rolls the request-level faults: drop, throttle, server error, then the CU budget.
    pub fn roll_request(&self, kind: CuKind, counters: &Counters) -> Injected {
        let mut g = self.lock();
        let g = &mut *g;
        let c = &g.config;
        if c.drop_connection_rate > 0.0 && g.rng.random::<f64>() < c.drop_connection_rate {
            bump(&counters.dropped);
            return Injected::Drop;
        }
        if c.throttle_rate > 0.0 && g.rng.random::<f64>() < c.throttle_rate {
            bump(&counters.throttles);
            return Injected::Error(match g.rng.random_range(0..3) {
                0 => ApiError::server_busy(),
                1 => ApiError::not_enough_cu(),
                _ => ApiError::too_frequent(),
            });
        }
        if c.server_error_rate > 0.0 && g.rng.random::<f64>() < c.server_error_rate {
            bump(&counters.server_errors);
            return Injected::Error(match g.rng.random_range(0..3) {
                0 => ApiError::internal(),
                1 => ApiError::unavailable(),
                _ => ApiError::timeout(),
            });
        }
        let bucket = match kind {
            CuKind::Read => g.read.as_mut(),
            CuKind::Write => g.write.as_mut(),
            CuKind::Table => None,
        };
        if let Some(b) = bucket {
            b.refill();
            if b.tokens <= 0.0 {
                bump(&counters.cu_throttled);
                return Injected::Error(ApiError::not_enough_cu());
            }
        }
        Injected::None
    }

    /// Charges what a request consumed against the budgets.
    pub fn charge(&self, read: u64, write: u64) {
        let mut g = self.lock();
        if let Some(b) = g.read.as_mut() {
            b.tokens -= read as f64;
        }
        if let Some(b) = g.write.as_mut() {
            b.tokens -= write as f64;
        }
    }

    /// For each BatchWriteRow row (by its primary key), whether it fails with an injected row
    /// error.
    pub fn roll_rows(&self, keys: &[&[PkValue]], counters: &Counters) -> Vec<Option<ApiError>> {
        let mut g = self.lock();
        let rate = g.config.row_error_rate;
        let poisoned = g.config.fail_rows_with_key.clone();
        if rate <= 0.0 && poisoned.is_none() {
            return vec![None; keys.len()];
        }
        keys.iter()
            .map(|key| {
                if let Some(p) = &poisoned
                    && key
                        .iter()
                        .any(|v| matches!(v, PkValue::String(s) if s == p))
                {
                    bump(&counters.row_errors);
                    return Some(ApiError::param(format!(
                        "Injected permanent failure for rows whose key holds '{p}'."
                    )));
                }
                if rate > 0.0 && g.rng.random::<f64>() < rate {
                    bump(&counters.row_errors);
                    Some(if g.rng.random_bool(0.5) {
                        ApiError::server_busy()
                    } else {
                        ApiError::row_conflict()
                    })
                } else {
                    None
                }
            })
            .collect()
    }
}
