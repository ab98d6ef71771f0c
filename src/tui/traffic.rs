//! The web node's live traffic in the console: request rate, bytes/s and the segment
//! cache's hit ratio, as sparklines of the last minute. Rates come from two readings of
//! the admin service's TrafficStats (cumulative counters), never from scraping /metrics.

use std::collections::VecDeque;

use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};

use crate::admin::wire::TrafficStatsResponse;
use crate::metrics::traffic::TrafficRates;

/// Readings kept for the sparklines (one a second: a minute).
const HISTORY: usize = 60;
/// Points drawn per sparkline, the newest last.
const WIDTH: usize = 16;
const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

#[derive(Clone, Debug, Default, PartialEq)]
pub struct TrafficHistory {
    last: Option<TrafficStatsResponse>,
    rates: VecDeque<TrafficRates>,
}

impl TrafficHistory {
    /// Takes a new reading; a web node that restarted starts the history again.
    pub fn record(&mut self, reading: TrafficStatsResponse) {
        if let Some(last) = &self.last {
            match TrafficRates::between(last, &reading) {
                Some(rates) => {
                    self.rates.push_back(rates);
                    if self.rates.len() > HISTORY {
                        self.rates.pop_front();
                    }
                }
                None if last.started_at_unix_ms != reading.started_at_unix_ms => self.rates.clear(),
                None => {}
            }
        }
        self.last = Some(reading);
    }

    pub fn latest(&self) -> Option<&TrafficRates> {
        self.rates.back()
    }

    /// One line: the latest figures, each with its sparkline; None before two readings.
    pub fn line(&self) -> Option<Line<'static>> {
        let now = self.latest()?;
        let spark = |value: &dyn Fn(&TrafficRates) -> f64| sparkline(self.rates.iter().map(value));
        let mut spans = vec![
            Span::raw("traffic: "),
            Span::raw(format!("{:.0} req/s ", now.requests_per_second)),
            Span::styled(
                spark(&|r| r.requests_per_second),
                Style::new().fg(Color::Cyan),
            ),
            Span::raw(format!(
                " · {}/s ",
                super::view::fmt_bytes(now.bytes_per_second as u64)
            )),
            Span::styled(spark(&|r| r.bytes_per_second), Style::new().fg(Color::Cyan)),
        ];
        if let Some(ratio) = now.cache_hit_ratio {
            spans.push(Span::raw(format!(" · cache {:.0} % ", ratio * 100.0)));
            spans.push(Span::styled(
                spark(&|r| r.cache_hit_ratio.unwrap_or(0.0)),
                Style::new().fg(Color::Green),
            ));
        }
        Some(Line::from(spans))
    }
}

/// The last [`WIDTH`] values as bars scaled to the largest of them.
fn sparkline(values: impl DoubleEndedIterator<Item = f64>) -> String {
    let mut recent: Vec<f64> = values.rev().take(WIDTH).collect();
    recent.reverse();
    let top = recent.iter().cloned().fold(0.0, f64::max);
    recent
        .iter()
        .map(|v| {
            if top <= 0.0 {
                BARS[0]
            } else {
                let level = (v / top * (BARS.len() - 1) as f64).round() as usize;
                BARS[level.min(BARS.len() - 1)]
            }
        })
        .collect()
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
            started_at_unix_ms: 1,
        }
    }

    #[test]
    fn rates_accumulate_and_a_restart_starts_over() {
        let mut history = TrafficHistory::default();
        history.record(reading(1_000, 0, 0, 0, 0));
        assert!(history.line().is_none(), "one reading gives no rate");
        history.record(reading(2_000, 100, 1_000_000, 90, 10));
        history.record(reading(3_000, 300, 3_000_000, 180, 20));
        let line: String = history
            .line()
            .unwrap()
            .spans
            .iter()
            .map(|s| s.content.to_string())
            .collect();
        assert!(line.contains("200 req/s"), "{line}");
        assert!(line.contains("cache 90 %"), "{line}");
        assert!(line.contains("▅█"), "{line}");
        let mut restarted = reading(4_000, 5, 0, 0, 0);
        restarted.started_at_unix_ms = 2;
        history.record(restarted);
        assert!(history.latest().is_none());
    }

    #[test]
    fn sparklines_scale_to_their_top() {
        assert_eq!(sparkline([0.0, 0.0].into_iter()), "▁▁");
        assert_eq!(sparkline([1.0, 2.0, 4.0].into_iter()), "▃▅█");
    }
}
