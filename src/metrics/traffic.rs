//! Rates from two readings of the admin service's TrafficStats, for the console's
//! sparklines: the web node keeps cumulative counters, its clients take differences.

use crate::proto::admin::TrafficStatsResponse;

/// A web node's cumulative traffic counters at one moment (what TrafficStats answers).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrafficReading {
    pub requests: u64,
    pub bytes_served: u64,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub server_errors: u64,
    pub at_unix_ms: i64,
    /// When the counters started from zero: two readings compare only if equal.
    pub started_at_unix_ms: i64,
}

/// A web node's traffic between two readings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrafficRates {
    pub requests_per_second: f64,
    pub bytes_per_second: f64,
    pub server_errors_per_second: f64,
    /// Hits ÷ (hits + misses) over the interval; None when no segment was asked for.
    pub cache_hit_ratio: Option<f64>,
}

impl TrafficRates {
    /// The rates from `earlier` to `later`; None when they cannot be compared: the web
    /// node restarted in between (its counters started again), or no time passed.
    pub fn between(earlier: &TrafficStatsResponse, later: &TrafficStatsResponse) -> Option<Self> {
        if earlier.started_at_unix_ms != later.started_at_unix_ms {
            return None;
        }
        let millis = later.at_unix_ms.checked_sub(earlier.at_unix_ms)?;
        if millis <= 0 {
            return None;
        }
        let seconds = millis as f64 / 1000.0;
        let delta = |a: u64, b: u64| b.checked_sub(a);
        let requests = delta(earlier.requests, later.requests)?;
        let bytes = delta(earlier.bytes_served, later.bytes_served)?;
        let errors = delta(earlier.server_errors, later.server_errors)?;
        let hits = delta(earlier.cache_hits, later.cache_hits)?;
        let misses = delta(earlier.cache_misses, later.cache_misses)?;
        let lookups = hits + misses;
        Some(TrafficRates {
            requests_per_second: requests as f64 / seconds,
            bytes_per_second: bytes as f64 / seconds,
            server_errors_per_second: errors as f64 / seconds,
            cache_hit_ratio: (lookups > 0).then(|| hits as f64 / lookups as f64),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(at: i64, requests: u64, bytes: u64, hits: u64, misses: u64) -> TrafficStatsResponse {
        TrafficStatsResponse {
            requests,
            bytes_served: bytes,
            cache_hits: hits,
            cache_misses: misses,
            server_errors: 0,
            at_unix_ms: at,
            started_at_unix_ms: 1_000,
        }
    }

    #[test]
    fn rates_are_differences_over_the_interval() {
        let a = reading(10_000, 100, 1_000_000, 50, 50);
        let b = reading(12_000, 300, 5_000_000, 140, 60);
        let rates = TrafficRates::between(&a, &b).unwrap();
        assert_eq!(rates.requests_per_second, 100.0);
        assert_eq!(rates.bytes_per_second, 2_000_000.0);
        assert_eq!(rates.cache_hit_ratio, Some(0.9));
        assert_eq!(rates.server_errors_per_second, 0.0);
    }

    #[test]
    fn a_restart_or_no_time_gives_no_rate() {
        let a = reading(10_000, 100, 0, 0, 0);
        let mut restarted = reading(12_000, 5, 0, 0, 0);
        restarted.started_at_unix_ms = 11_000;
        assert_eq!(TrafficRates::between(&a, &restarted), None);
        assert_eq!(TrafficRates::between(&a, &a), None);
        let idle = TrafficRates::between(&a, &reading(11_000, 100, 0, 0, 0)).unwrap();
        assert_eq!(idle.cache_hit_ratio, None);
        assert_eq!(idle.requests_per_second, 0.0);
    }
}
