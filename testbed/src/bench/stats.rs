//! Percentiles and rates, sans-IO: what the bench reports from its raw samples.
//!
//! Percentiles use the nearest-rank method (the smallest sample with at least p % of the
//! samples at or below it), so every reported figure is a latency that was actually measured.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// p50 / p90 / p99 of a set of latencies, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
}

impl Percentiles {
    /// `None` for an empty set.
    pub fn of(samples: &[Duration]) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        ms.sort_by(f64::total_cmp);
        Some(Self {
            p50: nearest_rank(&ms, 50.0),
            p90: nearest_rank(&ms, 90.0),
            p99: nearest_rank(&ms, 99.0),
        })
    }

    /// Each figure rounded to 3 decimals (for bench.json).
    pub fn rounded(self) -> Self {
        Self {
            p50: round3(self.p50),
            p90: round3(self.p90),
            p99: round3(self.p99),
        }
    }
}

/// Nearest-rank median of `values` (milliseconds, say); 0 for none.
pub fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    nearest_rank(&values, 50.0)
}

/// Nearest-rank percentile of sorted, non-empty `sorted`.
fn nearest_rank(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Decimal megabytes per second (1 MB = 10^6 bytes), as the GB/s target counts.
pub fn mb_per_s(bytes: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 {
        return 0.0;
    }
    bytes as f64 / 1e6 / secs
}

/// Rounds to 3 decimals (JSON stays readable).
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|&m| Duration::from_millis(m)).collect()
    }

    #[test]
    fn nearest_rank_percentiles() {
        let p = Percentiles::of(&ms(&(1..=100).collect::<Vec<_>>())).expect("some");
        assert_eq!((p.p50, p.p90, p.p99), (50.0, 90.0, 99.0));
        let p = Percentiles::of(&ms(&[7])).expect("some");
        assert_eq!((p.p50, p.p90, p.p99), (7.0, 7.0, 7.0));
        let p = Percentiles::of(&ms(&[30, 10, 20])).expect("some");
        assert_eq!((p.p50, p.p99), (20.0, 30.0));
        assert!(Percentiles::of(&[]).is_none());
    }

    #[test]
    fn rates_in_decimal_megabytes() {
        assert_eq!(mb_per_s(2_000_000, Duration::from_secs(1)), 2.0);
        assert_eq!(mb_per_s(1, Duration::ZERO), 0.0);
        assert_eq!(round3(1.23456), 1.235);
    }
}
