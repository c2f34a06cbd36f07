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

/// Of several runs, the median one by `rate` (the lower middle for an even count), and every
/// rate in the order the runs were taken. `None` for no runs.
pub fn median_run<T>(runs: Vec<T>, rate: impl Fn(&T) -> f64) -> Option<(T, Vec<f64>)> {
    let rates: Vec<f64> = runs.iter().map(&rate).collect();
    let mut order: Vec<usize> = (0..runs.len()).collect();
    order.sort_by(|a, b| rates[*a].total_cmp(&rates[*b]));
    let middle = *order.get(runs.len().saturating_sub(1) / 2)?;
    let chosen = runs.into_iter().nth(middle)?;
    Some((chosen, rates))
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
    fn the_median_run_keeps_its_own_figures_and_every_rate_in_order() {
        let runs = vec![("a", 900.0), ("b", 700.0), ("c", 1000.0)];
        let (chosen, rates) = median_run(runs, |r| r.1).expect("some");
        assert_eq!(chosen, ("a", 900.0));
        assert_eq!(rates, [900.0, 700.0, 1000.0]);
        let (chosen, _) = median_run(vec![2.0, 1.0], |r| *r).expect("some");
        assert_eq!(chosen, 1.0, "the lower middle of an even count");
        assert!(median_run(Vec::<f64>::new(), |r| *r).is_none());
    }

    #[test]
    fn rates_in_decimal_megabytes() {
        assert_eq!(mb_per_s(2_000_000, Duration::from_secs(1)), 2.0);
        assert_eq!(mb_per_s(1, Duration::ZERO), 0.0);
        assert_eq!(round3(1.23456), 1.235);
    }
}
